// Microservice registration over AMQP (OpenMatchmaking's queue
// `auth.microservices.register`). A message must carry the bearer access token
// of its sender in the AMQP header `authorization` ("Bearer <token>"), verified
// exactly as the RPC verifies it, and the sender needs the RPC's permission
// (identity.microservices.register in the system tenant) and must own the
// microservice name; without them the reply is the error and nothing changes.
// A message is validated exactly like the RPC, answered with "OK" or the error
// on its reply_to (with its correlation_id), and acknowledged only after the
// database commit, so a crash before the commit leaves it to be redelivered.
// Bad messages are rejected, never requeued; a transient failure is requeued
// once and rejected if it fails again.
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from "amqplib";
import type { Logger } from "pino";
import type { Database } from "../db/orm.ts";
import { RevocationRecorder } from "../events/index.ts";
import { TesseraError, unauthenticated } from "../errors.ts";
import type { DeclaredAccess } from "../grpc/access.ts";
import { readBearer, type Authenticator } from "../grpc/auth.middleware.ts";
import { registerMicroserviceAs } from "../permissions/index.ts";
import type { PermissionService, Registration } from "../permissions/index.ts";

export const REGISTRATION_QUEUE = "auth.microservices.register";
/** The RPC whose access declaration a registration message must satisfy. */
export const REGISTER_MICROSERVICE_PATH = "/tessera.identity.v1.PermissionService/RegisterMicroservice";
/**
 * Replies go only to reply queues: server-named exclusive queues and direct
 * reply-to. Anyone may publish a registration, so a free `reply_to` would let
 * a stranger make Tessera post into any queue of the vhost.
 */
const REPLY_QUEUE = /^amq\.(gen-|rabbitmq\.reply-to)/;
/** Larger bodies are refused unread: 1000 permissions with 500-character descriptions fit well within it. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

export interface RegistrationConsumerOptions {
  url: string;
  /** Verifies the bearer token of a message, as the gRPC auth middleware does. */
  authenticate: Authenticator;
  /** Applies the revocations a registration recorded (grants changed) to this process once it is handled. */
  feed: { poll(): Promise<boolean>; distrust(): void };
  /** The declared access of PermissionService/RegisterMicroservice, which a message must satisfy. */
  access: DeclaredAccess;
  queue?: string;
  prefetch?: number;
  log: Logger;
  /**
   * Test seam: when it returns true for a first delivery, processing fails
   * before the commit as a transient error would (the message is requeued).
   */
  failBeforeCommit?: (message: ConsumeMessage) => boolean;
}

class MalformedMessage extends Error {}

/** The bearer token of a message's `authorization` header (a string, or bytes from some clients). */
function messageToken(message: ConsumeMessage): string {
  const header: unknown = message.properties.headers?.authorization;
  const value = typeof header === "string" ? header : Buffer.isBuffer(header) ? header.toString("utf8") : undefined;
  const token = readBearer(value);
  if (!token) throw unauthenticated("TOKEN_MISSING", "a registration needs the AMQP header authorization: Bearer <access token>");
  return token;
}

/** Parses the JSON body into a registration; structural problems are malformed messages. */
export function parseRegistration(body: Buffer): Registration {
  if (body.length > MAX_MESSAGE_BYTES) throw new MalformedMessage(`message body is larger than ${MAX_MESSAGE_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    throw new MalformedMessage("message body is not JSON");
  }
  const v = value as { name?: unknown; version?: unknown; permissions?: unknown };
  if (!v || typeof v !== "object" || typeof v.name !== "string" || typeof v.version !== "string") {
    throw new MalformedMessage('message must be {"name": string, "version": string, "permissions": [{"codename", "description"}]}');
  }
  const permissions = v.permissions ?? [];
  if (!Array.isArray(permissions)) throw new MalformedMessage("permissions must be an array");
  return {
    name: v.name,
    version: v.version,
    permissions: permissions.map((p: unknown, i) => {
      const spec = p as { codename?: unknown; description?: unknown };
      if (!spec || typeof spec.codename !== "string" || (spec.description !== undefined && typeof spec.description !== "string")) {
        throw new MalformedMessage(`permissions[${i}] must be {"codename": string, "description": string}`);
      }
      return { codename: spec.codename, description: (spec.description as string | undefined) ?? "" };
    }),
  };
}

/** The reply for a failed registration: the error, with the same reason and field violations as the RPC. */
function errorReply(error: unknown): string {
  if (error instanceof TesseraError) {
    return JSON.stringify({ error: error.message, reason: error.reason, field_violations: error.fieldViolations });
  }
  if (error instanceof MalformedMessage) return JSON.stringify({ error: error.message, reason: "INVALID_INPUT", field_violations: [] });
  return JSON.stringify({ error: "registration failed; it was not applied", reason: "INTERNAL_ERROR", field_violations: [] });
}

export class RegistrationConsumer {
  readonly #orm: Database;
  readonly #permissions: PermissionService;
  readonly #options: RegistrationConsumerOptions;
  #connection?: ChannelModel;
  #channel?: Channel;
  #consumerTag?: string;
  readonly #inFlight = new Set<Promise<void>>();
  #stopping = false;

  constructor(orm: Database, permissions: PermissionService, options: RegistrationConsumerOptions) {
    this.#orm = orm;
    this.#permissions = permissions;
    this.#options = options;
  }

  get queue(): string {
    return this.#options.queue ?? REGISTRATION_QUEUE;
  }

  async start(): Promise<void> {
    const connection = await connect(this.#options.url);
    this.#connection = connection;
    try {
      await this.#open(connection);
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
  }

  async #open(connection: ChannelModel): Promise<void> {
    connection.on("error", (err) => this.#options.log.warn({ err }, "amqp connection error"));
    // Unacknowledged messages go back to the durable queue when a connection
    // drops; reconnect so that they, and new ones, are consumed again.
    connection.on("close", () => {
      if (!this.#stopping && this.#connection === connection) this.#reconnect(1000);
    });
    this.#channel = await connection.createChannel();
    await this.#channel.assertQueue(this.queue, { durable: true });
    await this.#channel.prefetch(this.#options.prefetch ?? 8);
    const channel = this.#channel;
    // A channel closed under us (the broker refused an operation, or the connection went) is
    // reopened with the connection; its unacknowledged messages are redelivered by the broker.
    channel.on("error", (err) => this.#options.log.warn({ err }, "amqp channel error"));
    channel.on("close", () => {
      if (!this.#stopping && this.#channel === channel) this.#connection?.close().catch(() => undefined);
    });
    const { consumerTag } = await channel.consume(this.queue, (message) => {
      if (!message) return;
      const work = this.#handle(channel, message)
        .catch((err: unknown) => this.#options.log.error({ err }, "registration message handling failed; the broker redelivers it"))
        .finally(() => this.#inFlight.delete(work));
      this.#inFlight.add(work);
    });
    this.#consumerTag = consumerTag;
    this.#options.log.info({ queue: this.queue }, "consuming microservice registrations");
  }

  #reconnect(delayMs: number): void {
    setTimeout(() => {
      if (this.#stopping) return;
      this.start().catch((err) => {
        this.#options.log.warn({ err }, "amqp reconnect failed; retrying");
        this.#reconnect(Math.min(delayMs * 2, 30_000));
      });
    }, delayMs).unref();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#channel && this.#consumerTag) await this.#channel.cancel(this.#consumerTag).catch(() => undefined);
    await Promise.allSettled([...this.#inFlight]);
    await this.#channel?.close().catch(() => undefined);
    await this.#connection?.close().catch(() => undefined);
  }

  /**
   * One message: authenticate, parse, register, then answer it on the channel it
   * came from. Revocations the registration recorded (grants changed) are applied
   * to this process before the reply, as after an RPC.
   */
  async #handle(channel: Channel, message: ConsumeMessage): Promise<void> {
    const log = this.#options.log.child({ queue: this.queue, correlationId: message.properties.correlationId });
    const { em, recorder } = RevocationRecorder.fork(this.#orm.em);
    const answer = async (reply: string | undefined, outcome: "ack" | "drop" | "requeue") => {
      if (recorder.recorded && !(await this.#options.feed.poll())) this.#options.feed.distrust();
      const { replyTo, correlationId } = message.properties;
      try {
        if (reply !== undefined && replyTo && !REPLY_QUEUE.test(replyTo)) log.info({ replyTo: replyTo.slice(0, 64) }, "reply_to is not a reply queue; no reply sent");
        else if (reply !== undefined && replyTo) channel.sendToQueue(replyTo, Buffer.from(reply), { correlationId, contentType: "application/json" });
        if (outcome === "ack") channel.ack(message);
        else channel.nack(message, false, outcome === "requeue");
      } catch (err) {
        // The channel closed meanwhile: the broker redelivers the message on the next one.
        log.warn({ err }, "could not answer a registration message; it will be redelivered");
      }
    };
    // A transient failure (database, crash before commit): one more attempt, then an error reply.
    const retryOrReject = (error: unknown) => {
      if (!message.fields.redelivered) {
        log.warn({ err: error }, "registration failed; requeued for one more attempt");
        return answer(undefined, "requeue");
      }
      log.error({ err: error }, "registration failed again on redelivery; rejected");
      return answer(errorReply(error), "drop");
    };
    let registration: Registration;
    let principal;
    try {
      // Who is asking comes first: an anonymous message costs one header check.
      principal = await this.#options.authenticate(messageToken(message), em);
      registration = parseRegistration(message.content);
    } catch (error) {
      if (error instanceof MalformedMessage || (error instanceof TesseraError && error.kind !== "UNAVAILABLE")) {
        log.info({ reason: error instanceof TesseraError ? error.reason : "INVALID_INPUT" }, "refused registration message");
        return answer(errorReply(error), "drop");
      }
      return retryOrReject(error);
    }
    try {
      if (!message.fields.redelivered && this.#options.failBeforeCommit?.(message)) throw new Error("simulated failure before commit");
      const result = await registerMicroserviceAs(this.#permissions, em, { principal, access: this.#options.access }, registration);
      log.info({ microservice: registration.name, version: registration.version, changed: result.changed, by: principal.subject }, "microservice registered over amqp");
      return answer("OK", "ack");
    } catch (error) {
      // Refused (invalid input, permission, ownership): answered like the RPC would, and dropped (it will never succeed).
      if (error instanceof TesseraError && error.kind !== "UNAVAILABLE") return answer(errorReply(error), "drop");
      return retryOrReject(error);
    }
  }
}
