// Who is calling: what a verified access token (or, later, a service
// assertion) stands for. Built by verification.ts, carried in every call's
// context, read by the authorization helpers.

export interface Principal {
  kind: "user" | "service";
  /** User UUID, or a service's region id. */
  subject: string;
  tenantId: string;
  tenantName: string;
  /** Session UUID (`sid`). */
  sessionId: string;
  /** Username; empty for services. */
  username: string;
  /** User principal name as the token says: `<user id or external id>@<tenant name>` (Argus). */
  upn: string;
  /** Permissions granted now ∩ elected in the token. */
  permissions: readonly string[];
  /** Elected permission patterns from the token's `scope`. */
  elected: readonly string[];
  expiresAt: Date;
  audience: readonly string[];
  /** The raw bearer token (never logged). */
  token: string;
  /** Region System facts of a service principal (or a user's own key): for routing and audit. */
  region?: { id: string; capability: string; registry: string; expiresAt: Date };
}
