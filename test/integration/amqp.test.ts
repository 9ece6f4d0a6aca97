// Microservice registration over the real RabbitMQ of this machine kind
// (127.0.0.1:5672, guest/guest). Skipped, saying so, where none runs.
import { connect, type Channel, type ChannelModel } from "amqplib";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Status } from "nice-grpc";
import { MAX_MESSAGE_BYTES, REGISTER_MICROSERVICE_PATH, RegistrationConsumer } from "../../src/amqp/index.ts";
import { readAccessTable } from "../../src/grpc/access.ts";
import { PermissionService } from "../../src/permissions/permission.service.ts";
import { expectFailure } from "../support/errors.ts";
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

  /** Sends a registration with `authorization: Bearer <token>` (the admin's by default; null sends none) and waits for the reply. */
  async function request(body: string | object, queue = QUEUE, token: string | null = server.adminToken): Promise<string> {
    const correlationId = crypto.randomUUID();
    const headers = token === null ? {} : { authorization: `Bearer ${token}` };
    channel.sendToQueue(queue, Buffer.from(typeof body === "string" ? body : JSON.stringify(body)), { replyTo: replyQueue, correlationId, persistent: true, headers });
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

  async function permissionsOf(name: string): Promise<string[]> {
    const { microservices } = await server.as(server.adminToken).permissions.listMicroservices({ pageSize: 1000 });
    return microservices.find((m) => m.name === name)?.permissions.map((p) => p.codename) ?? [];
  }

  /** A system-tenant user holding identity.microservices.register, as a service account would. */
  async function systemRegistrar(username: string): Promise<string> {
    const admin = server.as(server.adminToken);
    const { user } = await admin.users.createUser({ user: { username }, password: `${username}-password` });
    const { group } = await admin.permissions.createGroup({ group: { name: `${username} registrars`, permissions: ["identity.microservices.register"] } });
    await admin.permissions.addGroupMembers({ groupId: group!.id, userIds: [user!.id] });
    return (await server.login("system", username, `${username}-password`)).accessToken;
  }

  it("refuses a message without a bearer token, with a garbage one or an expired-looking one, and changes nothing", async () => {
    const strip = { name: "matchmaker", version: "9.0.0", permissions: [] };
    const before = await permissionsOf("matchmaker");
    expect(before).toContain("matchmaker.queue.retrieve");
    expect(JSON.parse(await request(strip, QUEUE, null))).toMatchObject({ reason: "TOKEN_MISSING" });
    expect(JSON.parse(await request(strip, QUEUE, "not-a-token"))).toMatchObject({ reason: "TOKEN_INVALID" });
    const [h, p] = server.adminToken.split(".");
    expect(JSON.parse(await request(strip, QUEUE, `${h}.${p}.${"A".repeat(86)}`))).toMatchObject({ reason: "TOKEN_INVALID" });
    // A brand-new name is not created either.
    expect(JSON.parse(await request({ name: "intruder", version: "1.0.0", permissions: [] }, QUEUE, null))).toMatchObject({ reason: "TOKEN_MISSING" });
    expect(await registered("matchmaker")).toBe("0.1.0");
    expect(await permissionsOf("matchmaker")).toEqual(before);
    expect(await registered("intruder")).toBeUndefined();
    await new Promise((r) => setTimeout(r, 200));
    expect((await channel.checkQueue(QUEUE)).messageCount).toBe(0);
  });

  it("needs the RPC's permission: a tenant administrator's token is refused as over gRPC", async () => {
    const admin = server.as(server.adminToken);
    await admin.tenants.createTenant({ tenant: { name: "amqp-other" }, admin: { username: "boss", password: "boss-password-1" } });
    const tenantAdmin = (await server.login("amqp-other", "boss", "boss-password-1")).accessToken;
    const reply = JSON.parse(await request({ name: "matchmaker", version: "9.0.0", permissions: [] }, QUEUE, tenantAdmin));
    expect(reply).toMatchObject({ reason: "PERMISSION_DENIED" });
    expect(await registered("matchmaker")).toBe("0.1.0");
  });

  it("keeps a microservice name to the principal that first registered it, over AMQP and gRPC alike", async () => {
    const other = await systemRegistrar("rogue");
    const reply = JSON.parse(await request({ name: "matchmaker", version: "9.0.0", permissions: [] }, QUEUE, other));
    expect(reply).toMatchObject({ reason: "PERMISSION_DENIED" });
    await expectFailure(server.as(other).permissions.registerMicroservice({ name: "matchmaker", version: "9.0.0", permissions: [] }), {
      code: Status.PERMISSION_DENIED,
      reason: "PERMISSION_DENIED",
    });
    expect(await permissionsOf("matchmaker")).toContain("matchmaker.queue.retrieve");
    // Its own names are its own: a new one registers, and the owner may publish new versions of it.
    expect(await request({ name: "rogue-svc", version: "1.0.0", permissions: [] }, QUEUE, other)).toBe("OK");
    expect(await request({ name: "rogue-svc", version: "1.1.0", permissions: [] }, QUEUE, other)).toBe("OK");
    expect(await registered("rogue-svc")).toBe("1.1.0");
    expect(JSON.parse(await request({ name: "rogue-svc", version: "2.0.0", permissions: [] }))).toMatchObject({ reason: "PERMISSION_DENIED" });
  });

  it("replies only to reply queues, so a stranger cannot make it post into another queue", async () => {
    const victim = `${QUEUE}.victim`;
    await channel.assertQueue(victim, { durable: false, autoDelete: false });
    try {
      channel.sendToQueue(QUEUE, Buffer.from("{not json"), { replyTo: victim, correlationId: "reflect", persistent: true });
      await new Promise((r) => setTimeout(r, 500));
      expect((await channel.checkQueue(victim)).messageCount).toBe(0);
      expect((await channel.checkQueue(QUEUE)).messageCount).toBe(0); // handled (dropped), not left behind
    } finally {
      await channel.deleteQueue(victim).catch(() => undefined);
    }
  });

  it("refuses a body over the size limit unread", async () => {
    const reply = JSON.parse(await request(`{"name":"big","version":"1.0.0","permissions":[],"pad":"${"x".repeat(MAX_MESSAGE_BYTES)}"}`));
    expect(reply).toMatchObject({ reason: "INVALID_INPUT" });
    expect(await registered("big")).toBeUndefined();
  });

  it("redelivers a message whose processing failed before the commit, and applies it once", async () => {
    const queue = `${QUEUE}.redelivery`;
    const firstAttempts: string[] = [];
    const consumer = new RegistrationConsumer(server.tessera.orm, new PermissionService(), {
      url: AMQP_URL,
      authenticate: server.tessera.authenticate,
      feed: { poll: async () => true, distrust: () => undefined },
      access: readAccessTable().get(REGISTER_MICROSERVICE_PATH)!,
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
