#!/bin/sh
# Call any RPC with the access token kept by login.sh:
#   scripts/recipes/call.sh tessera.identity.v1.UserService/GetMe
#   scripts/recipes/call.sh tessera.identity.v1.TenantService/ListTenants '{"namePrefix": "sys"}'
# Env: TESSERA_ADDR (127.0.0.1:50051), TESSERA_TOKEN (from login.sh).
. "$(dirname "$0")/common.sh"
: "${TESSERA_TOKEN:?log in first (login.sh)}"
method=${1:?usage: call.sh package.Service/Method [JSON body]}
body=${2:-'{}'}
npx buf curl --protocol grpc --http2-prior-knowledge \
  -H "authorization: Bearer $TESSERA_TOKEN" \
  -d "$body" "http://$TESSERA_ADDR/$method"
