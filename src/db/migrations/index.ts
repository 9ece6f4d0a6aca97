// The committed migration history, in order. `npm run migration:create` adds
// new files; list them here so both drivers apply exactly the same steps.
import type { MigrationObject } from "@mikro-orm/core";
import { Migration20261125000627 } from "./Migration20261125000627.ts";
import { Migration20261125080838 } from "./Migration20261125080838.ts";
import { Migration20261202012159 } from "./Migration20261202012159.ts";
import { Migration20261202075201 } from "./Migration20261202075201.ts";
import { Migration20261202095955 } from "./Migration20261202095955.ts";
import { Migration20261202141008 } from "./Migration20261202141008.ts";
import { Migration20261202184500 } from "./Migration20261202184500.ts";
import { Migration20261202204257 } from "./Migration20261202204257.ts";

export const migrationsList: MigrationObject[] = [
  { name: "Migration20261125000627", class: Migration20261125000627 },
  { name: "Migration20261125080838", class: Migration20261125080838 },
  { name: "Migration20261202012159", class: Migration20261202012159 },
  // Remote logins: external identities, tenants' OpenID Connect issuers, the sessions' UPN subject.
  { name: "Migration20261202075201", class: Migration20261202075201 },
  // Refresh tokens handed out twice within the grace window.
  { name: "Migration20261202095955", class: Migration20261202095955 },
  // Region System registry: regions, capabilities, the authority key, the assertion jti record.
  { name: "Migration20261202141008", class: Migration20261202141008 },
  // Revocation events notify tessera_revocations on commit (replicas LISTEN).
  { name: "Migration20261202184500", class: Migration20261202184500 },
  // Indexes for retention (ended sessions, expired refresh tokens, old revocation events) and a session's refresh tokens.
  { name: "Migration20261202204257", class: Migration20261202204257 },
];
