"""Temporary AWS credentials at the edge (AWS.md): the mapped role becomes real credentials,
used to sign requests to AWS upstreams (SigV4) and vended at ``/_poolgate/aws/credentials``."""

from .endpoint import is_reserved, serve_reserved
from .room import AwsRoom
from .sigv4 import sign

__all__ = ["AwsRoom", "is_reserved", "serve_reserved", "sign"]
