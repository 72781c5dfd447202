"""Wire schema (protobuf ``medfed.v1``), tensor codec and chunking. Imports no other medfed module
except ``medfed.errors``."""
