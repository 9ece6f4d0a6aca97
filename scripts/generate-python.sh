#!/bin/sh
# `npm run generate:python` (part of `npm run generate`): the Python stubs in
# clients/python/, from Debian 12's protoc and grpc_python_plugin, which match
# its python3-protobuf and python3-grpcio. CI regenerates and diffs them, so
# another protoc would leave a diff that CI rejects: refuse to use one.
set -eu
expected="libprotoc 3.21.12"
for tool in protoc grpc_python_plugin; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "generate:python: $tool not found: apt-get install protobuf-compiler protobuf-compiler-grpc" >&2
    exit 1
  fi
done
if [ "$(protoc --version)" != "$expected" ]; then
  echo "generate:python: $(protoc --version) is not Debian 12's $expected, whose output CI checks in" >&2
  exit 1
fi
buf generate --template clients/python/buf.gen.yaml
buf generate --template clients/python/buf.gen.google-rpc.yaml
