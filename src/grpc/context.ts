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
 * The context our middleware hands on: one object per call, made by the
 * first of our layers that sees the call (`CallScope.of`), which the later
 * layers fill in (peer, request id, principal, access). Its EntityManager
 * fork and its logger are made when first read: a VerifyToken answered from
 * the caches, or a health check, makes neither. They are getters of this
 * class, shared by every call, so that no call pays for a prototype or an
 * accessor of its own.
 */
export class CallScope implements TesseraCallContext {
  readonly metadata: CallContext["metadata"];
  readonly header: CallContext["header"];
  readonly trailer: CallContext["trailer"];
  readonly signal: AbortSignal;
  peer: string;
  requestId = "";
  principal: Principal | undefined = undefined;
  /** Set by the auth middleware before any handler runs. */
  access!: DeclaredAccess;
  readonly #base: CallContext;
  #log: Logger | undefined = undefined;
  #makeLog: (() => Logger) | undefined = undefined;
  #em: EntityManager | undefined = undefined;
  #makeEm: (() => EntityManager) | undefined = undefined;

  private constructor(base: CallContext) {
    this.#base = base;
    this.metadata = base.metadata;
    this.header = base.header;
    this.trailer = base.trailer;
    this.signal = base.signal;
    this.peer = base.peer;
    // A context that already carries what one of our layers adds (a layer run on its own, in a unit test) keeps it.
    const given = base as Partial<TesseraContext>;
    if (given.em !== undefined) this.#em = given.em;
    if (given.log !== undefined) this.#log = given.log;
    if (given.requestId !== undefined) this.requestId = given.requestId;
    if (given.principal !== undefined) this.principal = given.principal;
    if (given.access !== undefined) this.access = given.access;
  }

  /** The call's scope: `context` itself when a layer before made it, else a new one over it. */
  static of(context: CallContext): CallScope {
    return context instanceof CallScope ? context : new CallScope(context);
  }

  sendHeader(): void {
    this.#base.sendHeader();
  }

  get log(): Logger {
    return (this.#log ??= made(this.#makeLog, "the call has no logger: loggingMiddleware is not in the chain"));
  }

  /** Sets how the call's logger is made when first used. */
  logWith(make: () => Logger): void {
    this.#log = undefined;
    this.#makeLog = make;
  }

  get em(): EntityManager {
    return (this.#em ??= made(this.#makeEm, "the call has no EntityManager: ormContextMiddleware is not in the chain"));
  }

  /** Sets how the call's EntityManager is made when first read. */
  emFrom(make: () => EntityManager): void {
    this.#em = undefined;
    this.#makeEm = make;
  }
}

/** What `make` makes; a scope read before its layer said how to make it is a wiring bug, named by `missing`. */
function made<T>(make: (() => T) | undefined, missing: string): T {
  if (!make) throw new Error(missing);
  return make();
}
