// The revocation log: tenants, users, permissions, sessions and keys append
// an event in the transaction that makes the change; the revocation feed
// (revocation-feed.ts) follows the table on every replica.
//
// Making a revocation visible before a mutating call returns is one
// mechanism: each call's EntityManager carries a RevocationRecorder (a
// MikroORM subscriber on the call's own event manager, inherited by its
// transactions), and after the call, on its success and error paths alike,
// the caller of the domain (gRPC middleware, AMQP consumer) applies what it
// recorded by polling the feed once.
import type { EntityManager, EventSubscriber } from "@mikro-orm/core";
import { RevocationEventEntity } from "./revocation-event.entity.ts";

export type RevocationKind =
  | "SESSION_REVOKED"
  | "USER_REVOKED"
  | "TENANT_REVOKED"
  | "KEY_ADDED"
  | "KEY_RETIRED"
  | "GRANTS_CHANGED"
  /** A region or capability was created, changed, revoked or deleted, or the registry authority rotated. */
  | "REGISTRY_CHANGED";

export interface RevocationRecord {
  kind: RevocationKind;
  tenantId?: string;
  userId?: string;
  sessionId?: string;
  keyId?: string;
}

/**
 * Appends a revocation to the log in `em`'s unit of work: it commits (or
 * not) with the change it records. The call's RevocationRecorder notices it.
 */
export function recordRevocation(em: EntityManager, record: RevocationRecord): void {
  em.create(RevocationEventEntity, {
    kind: record.kind,
    tenantId: record.tenantId ?? null,
    userId: record.userId ?? null,
    sessionId: record.sessionId ?? null,
    keyId: record.keyId ?? null,
  });
}

/** Notices revocation events written through one call's EntityManager. */
export class RevocationRecorder implements EventSubscriber {
  #recorded = false;

  getSubscribedEntities() {
    return [RevocationEventEntity];
  }

  afterCreate(): void {
    this.#recorded = true;
  }

  /** Did this call write a revocation event? */
  get recorded(): boolean {
    return this.#recorded;
  }

  /**
   * A fork of `em` for one call that carries a fresh recorder. The fork gets
   * its own event manager (a clone), so the recorder sees only this call's
   * writes, including those of its transactions (which clone it again).
   */
  static fork(em: EntityManager): { em: EntityManager; recorder: RevocationRecorder } {
    const fork = em.fork({ cloneEventManager: true });
    const recorder = new RevocationRecorder();
    fork.getEventManager().registerSubscriber(recorder);
    return { em: fork, recorder };
  }
}
