"""poolgate: an edge authorization gateway for Amazon Cognito User Pool (and OIDC) tokens.

The public API is what ``__all__`` lists (guarded by a test); everything else is internal.
"""

from .config import Config, load_config
from .errors import ConfigError, GatewayError
from .middleware import GatewayMiddleware
from .principal import Decision, Principal, VerifiedToken

__all__ = ["GatewayMiddleware", "load_config", "Config", "ConfigError", "GatewayError",
           "Principal", "VerifiedToken", "Decision", "__version__"]
__version__ = "0.1.0"
