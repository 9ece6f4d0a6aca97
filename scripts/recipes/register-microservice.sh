#!/bin/sh
# Register a microservice and its complete permission set, with the system
# tenant's token (TESSERA_TOKEN from login.sh). A new version replaces the set.
#   scripts/recipes/register-microservice.sh
# Env: MICROSERVICE (game), MICROSERVICE_VERSION (1.0.0), MICROSERVICE_PERMISSIONS
#      (JSON list of {"codename", "description"}; two game permissions by default).
. "$(dirname "$0")/common.sh"
: "${TESSERA_TOKEN:?log in first (login.sh)}"
export MICROSERVICE="${MICROSERVICE:-game}" MICROSERVICE_VERSION="${MICROSERVICE_VERSION:-1.0.0}"
default_permissions='[{"codename": "game.profile.retrieve", "description": "Read a profile"}, {"codename": "game.match.create", "description": "Start a match"}]'
export MICROSERVICE_PERMISSIONS="${MICROSERVICE_PERMISSIONS:-$default_permissions}"

node -pe 'const e = process.env; JSON.stringify({ name: e.MICROSERVICE, version: e.MICROSERVICE_VERSION, permissions: JSON.parse(e.MICROSERVICE_PERMISSIONS) })' |
  npx buf curl --protocol grpc --http2-prior-knowledge \
    -H "authorization: Bearer $TESSERA_TOKEN" -d @- \
    "http://$TESSERA_ADDR/tessera.identity.v1.PermissionService/RegisterMicroservice"
