#!/bin/sh
# Create a tenant with its first administrator, then a user in it, as a
# system administrator (TESSERA_TOKEN from login.sh); prints both responses.
#   scripts/recipes/create-tenant.sh
# Env: NEW_TENANT (acme), NEW_TENANT_ADMIN (alice), NEW_TENANT_ADMIN_PASSWORD
#      (alice-password), NEW_USER (bob), NEW_USER_PASSWORD (bob-password).
. "$(dirname "$0")/common.sh"
: "${TESSERA_TOKEN:?log in first (login.sh)}"
export NEW_TENANT="${NEW_TENANT:-acme}" NEW_TENANT_ADMIN="${NEW_TENANT_ADMIN:-alice}"
export NEW_TENANT_ADMIN_PASSWORD="${NEW_TENANT_ADMIN_PASSWORD:-alice-password}"
export NEW_USER="${NEW_USER:-bob}" NEW_USER_PASSWORD="${NEW_USER_PASSWORD:-bob-password}"
bearer="authorization: Bearer $TESSERA_TOKEN"

created=$(
  node -pe 'const e = process.env; JSON.stringify({ tenant: { name: e.NEW_TENANT, displayName: e.NEW_TENANT }, admin: { username: e.NEW_TENANT_ADMIN, password: e.NEW_TENANT_ADMIN_PASSWORD } })' |
    npx buf curl --protocol grpc --http2-prior-knowledge -H "$bearer" -d @- \
      "http://$TESSERA_ADDR/tessera.identity.v1.TenantService/CreateTenant"
)
printf '%s\n' "$created"

# System administrators act on other tenants by naming them with tenant_id.
NEW_TENANT_ID=$(printf '%s' "$created" | json_field tenant.id) && export NEW_TENANT_ID
node -pe 'const e = process.env; JSON.stringify({ tenantId: e.NEW_TENANT_ID, user: { username: e.NEW_USER }, password: e.NEW_USER_PASSWORD })' |
  npx buf curl --protocol grpc --http2-prior-knowledge -H "$bearer" -d @- \
    "http://$TESSERA_ADDR/tessera.identity.v1.UserService/CreateUser"
