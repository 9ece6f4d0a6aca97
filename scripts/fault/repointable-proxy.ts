// A TCP forwarder whose target can be changed while it runs: what a virtual
// IP, a DNS switch or PgBouncer's RELOAD does for a database failover. New
// connections go to the current target; repoint() also drops the
// connections still open to the old one (as a fenced old primary would).
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";

export class RepointableProxy {
  #server?: Server;
  #target: { host: string; port: number };
  readonly #pairs = new Set<{ client: Socket; upstream: Socket; port: number }>();
  port = 0;
  /** Connections accepted, and those whose upstream could not be reached. */
  accepted = 0;
  refused = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = { ...target };
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get targetPort(): number {
    return this.#target.port;
  }

  async start(): Promise<this> {
    this.#server = createServer((client) => {
      this.accepted++;
      const { host, port } = this.#target;
      const upstream = connect({ host, port });
      const pair = { client, upstream, port };
      this.#pairs.add(pair);
      const close = () => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      upstream.on("error", (error: NodeJS.ErrnoException) => {
        if (error.code === "ECONNREFUSED") this.refused++;
        close();
      });
      client.on("error", close);
      client.on("close", close);
      upstream.on("close", close);
      if (Date.now() < this.#downUntil) {
        // Cut off: the database "is gone" (the client sees its connection dropped at once).
        close();
        return;
      }
      client.pipe(upstream);
      const messages = new ServerMessages();
      upstream.on("data", (chunk: Buffer) => {
        const commit = messages.endOfCommit(chunk);
        if (commit < 0 || !this.#cutAfterCommit) {
          client.write(chunk);
          return;
        }
        // Forward the COMMIT's reply, then drop every connection: the commit is acknowledged
        // to the server, and nothing it sends afterwards reaches the database for a while.
        client.write(chunk.subarray(0, commit), () => {
          const cut = this.#cutAfterCommit;
          this.#cutAfterCommit = undefined;
          if (!cut) return;
          this.#downUntil = Date.now() + cut.downMs;
          for (const p of [...this.#pairs]) {
            p.client.destroy();
            p.upstream.destroy();
            this.#pairs.delete(p);
          }
          cut.done();
        });
      });
    });
    this.#server.listen(this.port, "127.0.0.1");
    await once(this.#server, "listening");
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  #cutAfterCommit?: { downMs: number; done: () => void };
  #downUntil = 0;

  /**
   * Arms a cut: the moment PostgreSQL's reply to the next COMMIT has been
   * forwarded, every connection is dropped and new ones are dropped too for
   * `downMs`. Resolves when the cut happened. (A database lost right after a
   * commit, before the server does anything else with it.)
   */
  cutAfterNextCommit(downMs: number): Promise<void> {
    return new Promise((done) => (this.#cutAfterCommit = { downMs, done }));
  }

  /** Sends new connections to `port`; drops the ones still open to any other. Returns how many were dropped. */
  repoint(target: { host: string; port: number }): number {
    this.#target = { ...target };
    let dropped = 0;
    for (const pair of [...this.#pairs]) {
      if (pair.port === target.port) continue;
      pair.client.destroy();
      pair.upstream.destroy();
      this.#pairs.delete(pair);
      dropped++;
    }
    return dropped;
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.#pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
    if (this.#server) await new Promise<void>((resolve) => this.#server!.close(() => resolve()));
  }
}

/**
 * Follows PostgreSQL's backend messages on one connection (type byte, int32
 * length, body; node-pg asks for no TLS, so there is no untyped byte) to find
 * a CommandComplete "COMMIT" and the ReadyForQuery after it (node-pg settles
 * a query on ReadyForQuery: cut before it, and the commit looks failed).
 */
class ServerMessages {
  #header = Buffer.alloc(0);
  /** Bytes of the current message's body still to come; its type; its body when it is a CommandComplete. */
  #remaining = 0;
  #type = 0;
  #body: Buffer[] | undefined;
  #afterCommit = false;

  /** The offset just past the ReadyForQuery that follows a CommandComplete "COMMIT", when it ends in `chunk`; else -1. */
  endOfCommit(chunk: Buffer): number {
    let i = 0;
    let found = -1;
    while (i < chunk.length) {
      if (this.#remaining === 0 && this.#header.length < 5) {
        const need = 5 - this.#header.length;
        this.#header = Buffer.concat([this.#header, chunk.subarray(i, i + need)]);
        i += Math.min(need, chunk.length - i);
        if (this.#header.length < 5) break;
        this.#type = this.#header[0]!;
        this.#remaining = this.#header.readInt32BE(1) - 4;
        this.#body = this.#type === 0x43 /* C */ ? [] : undefined;
      }
      const take = Math.min(this.#remaining, chunk.length - i);
      this.#body?.push(chunk.subarray(i, i + take));
      i += take;
      this.#remaining -= take;
      if (this.#remaining > 0) break;
      // One whole message.
      this.#header = Buffer.alloc(0);
      if (this.#body) {
        this.#afterCommit = Buffer.concat(this.#body).toString("utf8").replace(/\0$/, "") === "COMMIT";
        this.#body = undefined;
      } else if (this.#type === 0x5a /* Z */ && this.#afterCommit) {
        this.#afterCommit = false;
        if (found < 0) found = i;
      }
    }
    return found;
  }
}
