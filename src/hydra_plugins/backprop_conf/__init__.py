# Found by Hydra's plugin discovery (DVC's hydra.plugins_path points at src/):
# importing it registers backprop's config schema and resolvers.
from backprop.app.compose import register

register()
