"""The agent server: personalities and training runs over gRPC (`agentalign serve`).

`policy.py` plays personalities (sessions, batching), `training.py` runs training in worker
processes, `app.py` puts them in one grpc server with auth, TLS, health and reflection.
The API is `protos/agentalign/v1/*.proto`; the stubs in `v1/` are generated from it by
`build/gen_protos.py`. See docs/server.md.
"""
