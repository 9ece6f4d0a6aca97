// What every RPC handler receives besides its request: its own EntityManager
// fork, the authenticated principal (if any), and a request-scoped logger.
import type { EntityManager } from "@mikro-orm/core";
import type { CallContext } from "nice-grpc";
import type { Logger } from "pino";

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
  /** Permissions granted now ∩ elected in the token. */
  permissions: readonly string[];
  /** Elected permission patterns from the token's `scope`. */
  elected: readonly string[];
  expiresAt: Date;
  audience: readonly string[];
  /** The raw bearer token (never logged). */
  token: string;
}

export interface TesseraContext {
  em: EntityManager;
  principal?: Principal;
  /**
   * The caller's IP address, for throttling and session records: the socket
   * peer, or the forwarded client when the peer is a trusted proxy.
   */
  peer: string;
  log: Logger;
}

export type TesseraCallContext = CallContext & TesseraContext;
