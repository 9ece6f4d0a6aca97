// What every RPC handler receives besides its request: its own EntityManager
// fork, the authenticated principal (if any), and a request-scoped logger.
import type { EntityManager } from "@mikro-orm/core";
import type { CallContext } from "nice-grpc";
import type { Logger } from "pino";
import type { Principal } from "../tokens/index.ts";
import type { DeclaredAccess } from "./access.ts";

export type { Principal };

export interface TesseraContext {
  em: EntityManager;
  principal?: Principal;
  /** The RPC's declared access (options.proto), which the handler's authorization reads. */
  access: DeclaredAccess;
  /**
   * The caller's IP address, for throttling and session records: the socket
   * peer, or the forwarded client when the peer is a trusted proxy.
   */
  peer: string;
  /** The call's request id (x-request-id), on every line `log` writes and in the response header. */
  requestId: string;
  log: Logger;
}

export type TesseraCallContext = CallContext & TesseraContext;

/**
 * The context a middleware hands on: `base` with `extra` on top, linked by
 * prototype rather than copied, so that the lazy properties of the layers
 * before it (`em`, `log`) stay unevaluated until a handler reads them.
 */
export function extendContext<T extends object, E extends object>(base: T, extra: E): T & E {
  return Object.assign(Object.create(base) as T, extra) as T & E;
}
