#!/bin/sh
# Log in with a password and keep the tokens in the calling shell:
#   eval "$(scripts/recipes/login.sh)"
# sets TESSERA_TOKEN (the access token), TESSERA_REFRESH_TOKEN and TESSERA_SESSION_ID.
# Env: TESSERA_ADDR (127.0.0.1:50051), TESSERA_TENANT (system),
#      TESSERA_USERNAME (admin), TESSERA_PASSWORD (required).
. "$(dirname "$0")/common.sh"
export TESSERA_TENANT="${TESSERA_TENANT:-system}" TESSERA_USERNAME="${TESSERA_USERNAME:-admin}"
export TESSERA_PASSWORD="${TESSERA_PASSWORD:?set TESSERA_PASSWORD}"

# The body is built from the environment and sent on stdin (-d @-): the
# password needs no JSON quoting by hand and stays off command lines.
response=$(
  node -pe 'const e = process.env; JSON.stringify({ password: { tenant: e.TESSERA_TENANT, username: e.TESSERA_USERNAME, password: e.TESSERA_PASSWORD } })' |
    npx buf curl --protocol grpc --http2-prior-knowledge -d @- \
      "http://$TESSERA_ADDR/tessera.identity.v1.IssueService/IssueToken"
)
printf '%s' "$response" | session_exports
