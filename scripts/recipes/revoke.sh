#!/bin/sh
# Log out: revoke a session, the kept token's own unless a session id is
# given; its access tokens stop verifying and its refresh token dies at once.
#   scripts/recipes/revoke.sh [session-id]
# Env: TESSERA_ADDR (127.0.0.1:50051), TESSERA_TOKEN (from login.sh).
. "$(dirname "$0")/common.sh"
: "${TESSERA_TOKEN:?log in first (login.sh)}"
node -pe 'JSON.stringify({ sessionId: process.argv[1] })' "${1-}" |
  npx buf curl --protocol grpc --http2-prior-knowledge \
    -H "authorization: Bearer $TESSERA_TOKEN" -d @- \
    "http://$TESSERA_ADDR/tessera.identity.v1.IssueService/RevokeSession"
