// Replicas on one PostgreSQL hear of each other's revocations at once: every
// insert into revocation_events notifies `tessera_revocations` at commit (a
// trigger, Migration20261202184500), and this listener, on a connection of
// its own, makes the feed poll the log right away. The log stays the source
// of truth and polling the fallback: a lost connection is reconnected with
// backoff, and after a reconnect the feed polls once (a notification may have
// been missed meanwhile).
import type { Logger } from "pino";
import pg from "pg";

export const REVOCATIONS_CHANNEL = "tessera_revocations";

export class RevocationListener {
  readonly #url: string;
  readonly #onNotify: () => void;
  readonly #log: Logger;
  #client?: pg.Client;
  #stopped = false;
  #delay = 100;
  #timer?: NodeJS.Timeout;

  constructor(url: string, onNotify: () => void, log: Logger) {
    this.#url = url;
    this.#onNotify = onNotify;
    this.#log = log;
  }

  /** Connects and listens; resolves once listening (or after the first failure, leaving reconnection to run). */
  async start(): Promise<void> {
    await this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const client = new pg.Client({ connectionString: this.#url, application_name: "tessera revocation listener", keepAlive: true });
    client.on("notification", (message) => {
      if (message.channel === REVOCATIONS_CHANNEL) this.#onNotify();
    });
    client.on("error", (error) => this.#lost(client, error));
    client.on("end", () => this.#lost(client, undefined));
    try {
      await client.connect();
      await client.query(`LISTEN ${REVOCATIONS_CHANNEL}`);
    } catch (error) {
      this.#lost(client, error);
      return;
    }
    if (this.#stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#delay = 100;
    // Anything committed while we were not listening is picked up by one poll.
    this.#onNotify();
  }

  #lost(client: pg.Client, error: unknown): void {
    if (this.#stopped || (this.#client !== undefined && this.#client !== client)) return;
    if (this.#client === client) this.#client = undefined;
    client.removeAllListeners("end");
    client.end().catch(() => undefined);
    if (this.#timer) return;
    this.#log.warn({ err: error, retryInMs: this.#delay }, "revocation listener lost its connection; polling meanwhile");
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#connect();
    }, this.#delay);
    this.#timer.unref();
    this.#delay = Math.min(this.#delay * 2, 10_000);
  }
}
