#!/bin/sh
# Who is this token? Remote verification (no bearer needed) sees logouts at
# once. The access token kept by login.sh unless one is given.
#   scripts/recipes/verify.sh [access-token]
# Env: TESSERA_ADDR (127.0.0.1:50051), TESSERA_TOKEN (from login.sh).
. "$(dirname "$0")/common.sh"
token=${1:-${TESSERA_TOKEN:?give a token or log in first (login.sh)}}
node -pe 'JSON.stringify({ token: process.argv[1] })' "$token" |
  npx buf curl --protocol grpc --http2-prior-knowledge -d @- \
    "http://$TESSERA_ADDR/tessera.identity.v1.VerifyService/VerifyToken"
