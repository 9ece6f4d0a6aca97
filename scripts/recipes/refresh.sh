#!/bin/sh
# Exchange the kept refresh token for new tokens (it rotates: the old one is
# spent) and keep them in the calling shell, like login.sh:
#   eval "$(scripts/recipes/refresh.sh)"
# Env: TESSERA_ADDR (127.0.0.1:50051), TESSERA_REFRESH_TOKEN (from login.sh).
. "$(dirname "$0")/common.sh"
: "${TESSERA_REFRESH_TOKEN:?log in first (login.sh)}"
response=$(
  node -pe 'JSON.stringify({ refreshToken: process.argv[1] })' "$TESSERA_REFRESH_TOKEN" |
    npx buf curl --protocol grpc --http2-prior-knowledge -d @- \
      "http://$TESSERA_ADDR/tessera.identity.v1.RefreshService/Refresh"
)
printf '%s' "$response" | session_exports
