"""Labelled tables: the CSV reader, class labels, the stratified split, min-max scaling."""
