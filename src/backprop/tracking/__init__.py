"""The only code that talks to MLflow: the store, one ``Tracker`` per run, the pyfunc model."""
