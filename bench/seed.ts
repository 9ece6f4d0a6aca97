// Seeds a running Tessera through its public gRPC API: a tenant, a few users
// with the tenant's default groups, and logged-in sessions (IssueToken
// password), as real clients would have them.
import { createChannel, createClient, Metadata } from "nice-grpc";
import { IssueServiceDefinition } from "@tessera/client";
import { TenantServiceDefinition } from "@tessera/client";
import { UserServiceDefinition } from "@tessera/client";
import { ADMIN_PASSWORD } from "./server.ts";

export const BENCH_TENANT = "bench";
export const userName = (i: number) => `bench-user-${String(i).padStart(3, "0")}`;
export const userPassword = (i: number) => `${userName(i)}-long-password`;

export interface Seeded {
  /** One session per entry: its first refresh token and access token. */
  sessions: { refreshToken: string; accessToken: string; sessionId: string; user: number }[];
  users: number;
}

/** Runs fn(0 … count-1) with at most `width` in flight; results in order. */
export async function inBatches<T>(count: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, count) }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

/** Creates tenant `bench` and `users` users (unless they exist), then logs in `sessions` times round-robin over them. */
export async function seedSessions(grpcPort: number, sessions: number, users = 16): Promise<Seeded> {
  const channel = createChannel(`127.0.0.1:${grpcPort}`);
  try {
    const issue = createClient(IssueServiceDefinition, channel);
    const bearer = (token: string) => ({ metadata: Metadata({ authorization: `Bearer ${token}` }) });
    const login = (tenant: string, username: string, password: string) =>
      issue.issueToken({ credential: { $case: "password", value: { tenant, username, password } } });
    const system = await login("system", "admin", ADMIN_PASSWORD);
    const tenants = createClient(TenantServiceDefinition, channel);
    const existing = await tenants.listTenants({ namePrefix: BENCH_TENANT }, bearer(system.accessToken));
    if (!existing.tenants.some((t) => t.name === BENCH_TENANT)) {
      await tenants.createTenant({ tenant: { name: BENCH_TENANT, displayName: "Benchmark" }, admin: { username: "bench-admin", password: "bench-admin-long-password" } }, bearer(system.accessToken));
      const admin = await login(BENCH_TENANT, "bench-admin", "bench-admin-long-password");
      const userService = createClient(UserServiceDefinition, channel);
      await inBatches(users, 4, (i) => userService.createUser({ user: { username: userName(i) }, password: userPassword(i) }, bearer(admin.accessToken)));
    }
    const seeded = await inBatches(sessions, 8, async (i) => {
      const r = await login(BENCH_TENANT, userName(i % users), userPassword(i % users));
      return { refreshToken: r.refreshToken, accessToken: r.accessToken, sessionId: r.sessionId, user: i % users };
    });
    return { sessions: seeded, users };
  } finally {
    channel.close();
  }
}
