// Tessera's own permissions, registered at start as microservice "identity".
// Every non-public RPC names one of them in its proto comment.
export const IDENTITY_MICROSERVICE = "identity";

export const IDENTITY_PERMISSIONS: Record<string, string> = {
  "identity.tenants.create": "Create tenants (system tenant)",
  "identity.tenants.get": "Read tenants",
  "identity.tenants.list": "List all tenants (system tenant)",
  "identity.tenants.update": "Update tenants",
  "identity.tenants.delete": "Delete tenants (system tenant)",
  "identity.users.create": "Create users",
  "identity.users.get": "Read users and their effective permissions",
  "identity.users.list": "List users",
  "identity.users.update": "Update, disable and enable users",
  "identity.users.delete": "Delete users",
  "identity.users.set_password": "Set other users' passwords",
  "identity.sessions.list": "List other users' sessions",
  "identity.sessions.revoke": "Revoke other users' sessions",
  "identity.keys.rotate": "Rotate the token signing key (system tenant)",
  "identity.revocations.watch": "Follow the revocation feed",
  "identity.microservices.register": "Register microservices and their permissions",
  "identity.microservices.list": "List registered microservices",
  "identity.permissions.list": "List registered permissions",
  "identity.groups.create": "Create groups",
  "identity.groups.get": "Read groups",
  "identity.groups.list": "List groups",
  "identity.groups.update": "Update groups and their members",
  "identity.groups.delete": "Delete groups",
  "identity.regions.create": "Create registry regions",
  "identity.regions.get": "Read registry regions",
  "identity.regions.list": "List registry regions and export the DNS zone",
  "identity.regions.update": "Update registry regions",
  "identity.regions.delete": "Delete registry regions",
  "identity.capabilities.publish": "Publish capability keys",
  "identity.capabilities.revoke": "Revoke capability keys",
  "identity.capabilities.list": "List capability keys",
  "identity.capabilities.lookup": "Resolve capability keys through registries",
  "identity.registry.rotate": "Rotate the registry authority key (system tenant)",
  "identity.self.retrieve": "Read your own account, groups and permissions (GetMe)",
  "identity.self.list_sessions": "List your own sessions and their client addresses",
  "identity.self.revoke_sessions": "Revoke your own other sessions (logging out the current one needs nothing)",
  "identity.self.set_password": "Change your own password (with the current one)",
  "identity.self.publish_keys": "Publish and revoke public keys for yourself in the registry, for one of your groups",
};

/**
 * Self-service permissions every user holds on its own account, beside its
 * groups' grants. Elected by default like any grant, so a token elected to a
 * narrow scope (e.g. game.profile.retrieve) cannot manage the account.
 */
export const SELF_GRANTS = ["identity.self.*"];

/** Patterns granted to each tenant's administrators group. */
export const ADMIN_GRANTS = ["*.*.*"];
export const ADMIN_GROUP_NAME = "administrators";
