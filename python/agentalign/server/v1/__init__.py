"""Generated gRPC stubs of protos/agentalign/v1 (build/gen_protos.py)."""
