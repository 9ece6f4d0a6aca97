// Microservice registration over the real RabbitMQ of this machine kind
// (127.0.0.1:5672, guest/guest). Skipped, saying so, where none runs.
import { connect, type Channel, type ChannelModel } from "amqplib";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegistrationConsumer } from "../../src/amqp/registration-consumer.ts";
import { PermissionService } from "../../src/permissions/permission.service.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const AMQP_URL = process.env.TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const reachable = await connect(AMQP_URL).then(
  async (c) => {
    await c.close();
    return true;
  },
  () => false,
);
if (!reachable) console.warn(`amqp.test.ts: no RabbitMQ at ${AMQP_URL}; the AMQP registration tests are skipped`);

const runId = `${process.pid}-${Date.now()}`;
const QUEUE = `tessera-test.register.${runId}`;

describe.skipIf(!reachable)("microservice registration over AMQP", () => {
  let server: TestServer;
  let connection: ChannelModel;
  let channel: Channel;
  let replyQueue: string;
  const replies = new Map<string, string[]>();

  beforeAll(async () => {
    server = await startTestServer({ AMQP_URL, TESSERA_AMQP_REGISTRATION_QUEUE: QUEUE });
    connection = await connect(AMQP_URL);
    channel = await connection.createChannel();
    replyQueue = (await channel.assertQueue("", { exclusive: true })).queue;
    await channel.consume(replyQueue, (m) => {
      if (!m) return;
      const id = String(m.properties.correlationId);
      replies.set(id, [...(replies.get(id) ?? []), m.content.toString()]);
    }, { noAck: true });
  });
  afterAll(async () => {
    await channel?.deleteQueue(QUEUE).catch(() => undefined);
    await connection?.close().catch(() => undefined);
    await server?.close();
  });

  async function request(body: string | object, queue = QUEUE): Promise<string> {
    const correlationId = crypto.randomUUID();
    channel.sendToQueue(queue, Buffer.from(typeof body === "string" ? body : JSON.stringify(body)), { replyTo: replyQueue, correlationId, persistent: true });
    for (let i = 0; i < 100 && !replies.has(correlationId); i++) await new Promise((r) => setTimeout(r, 50));
    const answers = replies.get(correlationId);
    expect(answers, "a reply should arrive").toBeDefined();
    return answers![0]!;
  }

  async function registered(name: string): Promise<string | undefined> {
    const { microservices } = await server.as(server.adminToken).permissions.listMicroservices({ pageSize: 1000 });
    return microservices.find((m) => m.name === name)?.version;
  }

  it("registers a microservice, replies OK with the correlation id, and is idempotent", async () => {
    const message = { name: "matchmaker", version: "0.1.0", permissions: [{ codename: "matchmaker.queue.retrieve", description: "See the queue" }] };
    expect(await request(message)).toBe("OK");
    expect(await registered("matchmaker")).toBe("0.1.0");
    expect(await request(message)).toBe("OK");
    // New tenants' Game client group auto-grants the *.*.retrieve permission.
    const { tenant } = await server.as(server.adminToken).tenants.createTenant({ tenant: { name: "amqp-tenant" } });
    const { group } = await server.as(server.adminToken).permissions.getGroup({ tenantId: tenant!.id, name: "Game client" });
    expect(group?.permissions).toContain("matchmaker.queue.retrieve");
  });

  it("validates exactly like the RPC and replies with the error, without requeueing", async () => {
    const reply = JSON.parse(await request({ name: "matchmaker", version: "2.0", permissions: [{ codename: "other.queue.retrieve", description: "" }] }));
    expect(reply.reason).toBe("INVALID_INPUT");
    expect(reply.field_violations.map((v: { field: string }) => v.field)).toEqual(["version", "permissions[0].codename"]);
    expect(await registered("matchmaker")).toBe("0.1.0");
  });

  it("rejects a malformed message with an error reply instead of looping on it", async () => {
    const reply = JSON.parse(await request("{not json"));
    expect(reply).toMatchObject({ reason: "INVALID_INPUT" });
    await new Promise((r) => setTimeout(r, 300));
    const { messageCount } = await channel.checkQueue(QUEUE);
    expect(messageCount).toBe(0);
    expect([...replies.values()].filter((answers) => answers.some((a) => a.includes("not JSON")))).toHaveLength(1);
  });

  it("redelivers a message whose processing failed before the commit, and applies it once", async () => {
    const queue = `${QUEUE}.redelivery`;
    const firstAttempts: string[] = [];
    const consumer = new RegistrationConsumer(server.tessera.orm, new PermissionService(), {
      url: AMQP_URL,
      queue,
      log: pino({ level: "silent" }),
      failBeforeCommit: (m) => {
        firstAttempts.push(String(m.properties.correlationId));
        return true;
      },
    });
    await consumer.start();
    try {
      const answer = await request({ name: "leaderboard", version: "1.0.0", permissions: [{ codename: "leaderboard.score.retrieve", description: "" }] }, queue);
      expect(answer).toBe("OK");
      expect(firstAttempts).toHaveLength(1); // failed once, then processed on redelivery
      expect(await registered("leaderboard")).toBe("1.0.0");
      const correlationId = firstAttempts[0]!;
      await new Promise((r) => setTimeout(r, 300));
      expect(replies.get(correlationId)).toEqual(["OK"]);
      expect((await channel.checkQueue(queue)).messageCount).toBe(0);
    } finally {
      await consumer.stop();
      await channel.deleteQueue(queue).catch(() => undefined);
    }
  });
});
