// The per-call context the middleware builds (CallScope): the EntityManager
// fork and the logger are made only when a handler reads them, and every
// layer fills in the same object.
import { Metadata } from "nice-grpc";
import pino from "pino";
import { BlockList } from "node:net";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { Database } from "../../src/db/orm.ts";
import { CallScope } from "../../src/grpc/context.ts";
import { loggingMiddleware, ormContextMiddleware } from "../../src/grpc/middleware.ts";

/** An ORM whose `em.fork()` counts forks and keeps the subscribers registered on each. */
function countingOrm() {
  const forks: { subscribers: { afterCreate(): void }[] }[] = [];
  const orm = {
    em: {
      fork() {
        const fork = { subscribers: [] as { afterCreate(): void }[] };
        forks.push(fork);
        return { fork, getEventManager: () => ({ registerSubscriber: (s: { afterCreate(): void }) => fork.subscribers.push(s) }) };
      },
    },
  };
  return { orm: orm as unknown as Database, forks };
}

function countingFeed() {
  const feed = { polls: 0, distrusted: 0, answer: true, poll: async () => (feed.polls++, feed.answer), distrust: () => void feed.distrusted++ };
  return feed;
}

function baseContext() {
  return { metadata: Metadata(), peer: "ipv4:192.0.2.1:5000", header: Metadata(), sendHeader() {}, trailer: Metadata(), signal: new AbortController().signal };
}

/** Runs one unary call through `middleware` with `handler` as the next step. */
async function run(middleware: (call: never, context: never) => AsyncGenerator<never, unknown, undefined>, handler: (context: Record<string, unknown>) => unknown | Promise<unknown>, context: object = baseContext()) {
  const generator = middleware(
    {
      method: { path: "/tessera.identity.v1.VerifyService/VerifyToken", requestStream: false, responseStream: false, options: {} },
      requestStream: false,
      request: {},
      responseStream: false,
      // eslint-disable-next-line require-yield
      async *next(_request: unknown, next: object) {
        return await handler(next as Record<string, unknown>);
      },
    } as never,
    context as never,
  );
  for (;;) {
    const step = await generator.next();
    if (step.done) return step.value;
  }
}

describe("ormContextMiddleware: the call's EntityManager is made when first read", () => {
  it("forks nothing for a call that never reads context.em, and polls no feed", async () => {
    const { orm, forks } = countingOrm();
    const feed = countingFeed();
    expect(await run(ormContextMiddleware(orm, feed) as never, (context) => "em" in context)).toBe(true);
    expect(forks).toHaveLength(0);
    expect(feed.polls).toBe(0);
  });

  it("forks once however often the call reads it, and each call gets its own fork", async () => {
    const { orm, forks } = countingOrm();
    const middleware = ormContextMiddleware(orm, countingFeed());
    const seen: unknown[] = [];
    for (let i = 0; i < 2; i++) {
      await run(middleware as never, (context) => {
        const em = context.em;
        expect(context.em).toBe(em);
        seen.push(em);
      });
    }
    expect(forks).toHaveLength(2);
    expect(seen[0]).not.toBe(seen[1]);
    expect((seen[0] as { fork: unknown }).fork).toBe(forks[0]);
  });

  it("after a call that recorded a revocation, success or failure, waits for the feed; distrusts it when the poll fails", async () => {
    for (const fails of [false, true]) {
      for (const answer of [true, false]) {
        const { orm, forks } = countingOrm();
        const feed = countingFeed();
        feed.answer = answer;
        const call = run(ormContextMiddleware(orm, feed) as never, (context) => {
          void context.em;
          forks[0]!.subscribers[0]!.afterCreate();
          if (fails) throw new Error("handler failed");
        });
        if (fails) await expect(call).rejects.toThrow("handler failed");
        else await call;
        expect([feed.polls, feed.distrusted]).toEqual([1, answer ? 0 : 1]);
      }
    }
    // Read, but nothing recorded: no poll.
    const { orm } = countingOrm();
    const feed = countingFeed();
    await run(ormContextMiddleware(orm, feed) as never, (context) => void context.em);
    expect(feed.polls).toBe(0);
  });
});

describe("loggingMiddleware: the call's logger is made when first used", () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({ write(chunk, _enc, done) { for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l)); done(); } });
    return { lines, stream };
  }

  it("a successful call at level info logs nothing and makes no child logger; a failed one logs with the request id", async () => {
    const { lines, stream } = capture();
    const logger = pino({ level: "info" }, stream);
    let children = 0;
    const child = logger.child.bind(logger);
    logger.child = ((...args: Parameters<typeof child>) => (children++, child(...args))) as typeof logger.child;
    const middleware = loggingMiddleware(logger, new BlockList());
    await run(middleware as never, () => "ok");
    expect(children).toBe(0);
    const context = baseContext();
    context.metadata.set("x-request-id", "req-1");
    await expect(run(middleware as never, () => { throw new Error("boom"); }, context)).rejects.toThrow("boom");
    await new Promise((resolve) => setImmediate(resolve));
    expect(children).toBe(1);
    expect(lines).toMatchObject([{ msg: "rpc failed", code: "UNKNOWN", reqId: "req-1", rpc: "/tessera.identity.v1.VerifyService/VerifyToken" }]);
  });

  it("what the handler logs carries the request id, and at debug a successful call is logged", async () => {
    const { lines, stream } = capture();
    const middleware = loggingMiddleware(pino({ level: "debug" }, stream), new BlockList());
    const context = baseContext();
    context.metadata.set("x-request-id", "req-2");
    await run(middleware as never, (c) => (c.log as pino.Logger).info("inside"), context);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toMatchObject([{ msg: "inside", reqId: "req-2" }, { msg: "rpc", code: "OK", reqId: "req-2" }]);
    expect(context.header.get("x-request-id")).toBe("req-2");
  });
});

describe("CallScope", () => {
  it("is one object per call, which every layer fills in, with nice-grpc's context underneath", async () => {
    const { orm, forks } = countingOrm();
    const base = { ...baseContext(), sendHeader: () => void sent++ };
    let sent = 0;
    const scope = CallScope.of(base);
    expect(CallScope.of(scope)).toBe(scope);
    expect([scope.metadata, scope.header, scope.trailer, scope.signal, scope.peer]).toEqual([base.metadata, base.header, base.trailer, base.signal, base.peer]);
    scope.sendHeader();
    expect(sent).toBe(1);
    // Reading em or log before a layer said how to make them is a wiring bug, and says so.
    expect(() => scope.em).toThrow("ormContextMiddleware is not in the chain");
    expect(() => scope.log).toThrow("loggingMiddleware is not in the chain");
    await run(ormContextMiddleware(orm, countingFeed()) as never, (context) => {
      expect(context).toBe(scope);
      expect(forks).toHaveLength(0);
      void context.em;
    }, scope);
    expect(forks).toHaveLength(1);
  });

  it("keeps what a plain context already carries (a layer run on its own)", () => {
    const em = {} as never;
    const scope = CallScope.of({ ...baseContext(), em, requestId: "r", access: { kind: "public" } } as never);
    expect([scope.em, scope.requestId, scope.access]).toEqual([em, "r", { kind: "public" }]);
  });
});
