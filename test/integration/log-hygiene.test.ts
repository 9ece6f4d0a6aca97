// Secrets never reach the logs: a database error during a registration used
// to log the argon2 hash and the e-mail (the driver's `query` and `params`).
// The database is made to fail every insert into users; the captured log must
// explain the failure without the password, its hash or the e-mail.
import { Writable } from "node:stream";
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logging.ts";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const lines: string[] = [];
const capture = new Writable({
  write(chunk, _encoding, done) {
    lines.push(String(chunk));
    done();
  },
});

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({}, { logger: createLogger({ level: "info", destination: capture }) });
  const admin = server.as(server.adminToken);
  await admin.tenants.createTenant({ tenant: { name: "leaky", selfRegistrationEnabled: true } });
  const db = server.tessera.orm.em.fork().getConnection();
  await db.execute(`create function tessera_test_fail() returns trigger language plpgsql as $$ begin raise exception 'forced failure for the log test'; end $$`);
  await db.execute(`create trigger tessera_test_fail before insert on users for each row execute function tessera_test_fail()`);
});
afterAll(() => server?.close());

describe("logs", () => {
  it("explain a database error without its SQL parameters: no password, hash or e-mail", async () => {
    const password = "log-test-Secret-passphrase-7";
    const email = "victim.log-test@example.com";
    await expectFailure(
      server.clients.users.registerUser({ tenant: "leaky", username: "victim", email, password, passwordConfirmation: password }),
      { code: Status.INTERNAL, reason: "INTERNAL_ERROR" },
    );
    await expectFailure(server.as(server.adminToken).users.createUser({ user: { username: "victim2", email }, password }), {
      code: Status.INTERNAL,
      reason: "INTERNAL_ERROR",
    });
    const log = lines.join("");
    // The failure is logged (so the test looks at the right lines) ...
    expect(log).toContain("forced failure for the log test");
    expect(log.match(/"unexpected error"/g)?.length).toBe(2);
    // ... without any of the data the statement carried.
    expect(log).not.toContain(password);
    expect(log).not.toContain(email);
    expect(log).not.toContain("victim.log-test");
    expect(log).not.toMatch(/\$argon2id\$/);
    expect(log).not.toMatch(/insert into/i);
    expect(log).not.toContain('"params"');
  });
});
