// The authentication middleware (src/grpc/auth.middleware.ts), driven as
// nice-grpc drives it: a call whose `next` is the handler, and a context with
// the request metadata. The authenticator is its collaborator, a stub here
// that records what it is given; the EntityManager is an opaque stand-in the
// middleware only passes on.
import type { EntityManager } from "@mikro-orm/core";
import { Metadata } from "nice-grpc";
import { describe, expect, it } from "vitest";
import { entityManagerOf } from "../../src/db/entity-manager-source.ts";
import { unauthenticated } from "../../src/errors.ts";
import type { DeclaredAccess } from "../../src/grpc/access.ts";
import { authMiddleware, readBearer, type Authenticator } from "../../src/grpc/auth.middleware.ts";
import type { TesseraContext } from "../../src/grpc/context.ts";
import { MAX_JWT_LENGTH } from "../../src/tokens/jwt.ts";
import { grpcRefusal } from "../support/errors.ts";

type Principal = NonNullable<TesseraContext["principal"]>;

const access = (kind: DeclaredAccess["kind"], extra: Partial<DeclaredAccess> = {}): DeclaredAccess => ({
  kind,
  permission: kind === "permission" || kind === "self-or-permission" ? "identity.users.get" : "",
  selfPermission: kind === "self" || kind === "self-or-permission" ? "identity.self.retrieve" : "",
  systemOnly: false,
  anonymousWhenConfigured: false,
  ...extra,
});

const PUBLIC = "/tessera.identity.v1.IssueService/IssueToken";
const AUTHENTICATED = "/tessera.identity.v1.TokenService/Whoami";
const PERMISSION = "/tessera.identity.v1.UserService/GetUser";
const SELF_OR_PERMISSION = "/tessera.identity.v1.UserService/ListSessions";
const SELF = "/tessera.identity.v1.UserService/GetMe";
const SIGNUP = "/tessera.identity.v1.TenantService/CreateTenant";
const UNDECLARED = "/tessera.identity.v1.UserService/Undeclared";

const TABLE = new Map<string, DeclaredAccess>([
  [PUBLIC, access("public")],
  [AUTHENTICATED, access("authenticated")],
  [PERMISSION, access("permission")],
  [SELF_OR_PERMISSION, access("self-or-permission")],
  [SELF, access("self")],
  [SIGNUP, access("permission", { permission: "identity.tenants.create", systemOnly: true, anonymousWhenConfigured: true })],
]);
const NOT_PUBLIC = [AUTHENTICATED, PERMISSION, SELF_OR_PERMISSION, SELF];

const EM = { stand: "in" } as unknown as EntityManager;
const REQUEST = { tenantId: "t-1" };
const RESPONSE = { ok: true };
const TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln";

const PRINCIPAL: Principal = {
  kind: "user",
  subject: "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
  tenantId: "11111111-1111-4111-8111-111111111111",
  tenantName: "acme",
  sessionId: "cccccccc-cccc-4ccc-8ccc-cccccccccccc",
  username: "alice",
  upn: "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa@acme",
  permissions: ["identity.users.get"],
  elected: ["identity.users.get"],
  expiresAt: new Date("2030-01-01T00:00:00Z"),
  audience: ["tessera"],
  token: TOKEN,
};

/** An authenticator that records its calls and answers with `answer`. */
function stubAuthenticator(answer: () => Promise<Principal> = async () => PRINCIPAL) {
  const calls: { token: string; em: EntityManager }[] = [];
  const authenticate: Authenticator = (token, em) => {
    calls.push({ token, em: entityManagerOf(em) });
    return answer();
  };
  return { authenticate, calls };
}

interface Handled {
  response: unknown;
  yielded: unknown[];
  /** What the handler (call.next) received. */
  handled: { request: unknown; context: Record<string, unknown> }[];
}

/** Runs one call through the middleware; `headers` become the request metadata. */
async function call(authenticate: Authenticator, path: string, headers: Record<string, string> = {}, streamed: unknown[] = [], handled: Handled["handled"] = []): Promise<Handled> {
  const metadata = Metadata();
  for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
  const context = { metadata, peer: "ipv4:192.0.2.1:5000", header: Metadata(), sendHeader() {}, trailer: Metadata(), signal: new AbortController().signal, em: EM };
  const middleware = authMiddleware(authenticate, TABLE);
  const generator = middleware(
    {
      method: { path, requestStream: false, responseStream: streamed.length > 0, options: {} },
      requestStream: false,
      request: REQUEST,
      responseStream: false,
      async *next(request: unknown, nextContext: object) {
        handled.push({ request, context: nextContext as Record<string, unknown> });
        for (const item of streamed) yield item as never;
        return RESPONSE;
      },
    } as never,
    context,
  );
  const yielded: unknown[] = [];
  for (;;) {
    const step = await generator.next();
    if (step.done) return { response: step.value, yielded, handled };
    yielded.push(step.value);
  }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const TOKEN_MISSING = { code: "UNAUTHENTICATED", reason: "TOKEN_MISSING", message: "this call needs authorization: Bearer <access token>", violations: [] };
const MALFORMED = { code: "UNAUTHENTICATED", reason: "TOKEN_INVALID", message: "malformed authorization header", violations: [] };

describe("authMiddleware: deny by default", () => {
  it("refuses a method that declares no access, token or not, before looking at the token", async () => {
    for (const headers of [{}, bearer(TOKEN), { authorization: "garbage" }]) {
      const { authenticate, calls } = stubAuthenticator();
      expect(await grpcRefusal(call(authenticate, UNDECLARED, headers))).toEqual({
        code: "PERMISSION_DENIED",
        reason: "PERMISSION_DENIED",
        message: `${UNDECLARED} declares no access and is refused`,
        violations: [],
      });
      expect(calls).toEqual([]);
    }
  });

  it("lets an anonymous call reach a public method, without a principal", async () => {
    const { authenticate, calls } = stubAuthenticator();
    const result = await call(authenticate, PUBLIC);
    expect(calls).toEqual([]);
    expect(result.response).toEqual(RESPONSE);
    expect(result.handled).toHaveLength(1);
    const [{ request, context }] = result.handled as [Handled["handled"][number]];
    expect(request).toBe(REQUEST);
    expect(context.principal).toBeUndefined();
    expect(context.access).toBe(TABLE.get(PUBLIC));
    expect(context.em).toBe(EM);
    expect(context.peer).toBe("ipv4:192.0.2.1:5000");
  });

  it("lets an anonymous call reach a method that decides for anonymous callers itself", async () => {
    const { authenticate } = stubAuthenticator();
    const result = await call(authenticate, SIGNUP);
    expect(result.handled[0]?.context).toMatchObject({ principal: undefined, access: TABLE.get(SIGNUP) });
  });

  it("refuses an anonymous call to any other method (UNAUTHENTICATED/TOKEN_MISSING), before its handler", async () => {
    for (const path of NOT_PUBLIC) {
      const { authenticate, calls } = stubAuthenticator();
      const handled: Handled["handled"] = [];
      expect(await grpcRefusal(call(authenticate, path, {}, [], handled)), path).toEqual(TOKEN_MISSING);
      expect(calls).toEqual([]);
      expect(handled).toEqual([]);
    }
    // Other metadata is no token.
    const { authenticate } = stubAuthenticator();
    expect(await grpcRefusal(call(authenticate, SELF, { "x-authorization": `Bearer ${TOKEN}`, cookie: `token=${TOKEN}` }))).toEqual(TOKEN_MISSING);
  });
});

describe("authMiddleware: with a token", () => {
  it("verifies the bearer token and hands the principal and the declared access to the handler", async () => {
    for (const path of [...NOT_PUBLIC, PUBLIC, SIGNUP]) {
      const { authenticate, calls } = stubAuthenticator();
      const result = await call(authenticate, path, bearer(TOKEN));
      expect(calls).toEqual([{ token: TOKEN, em: EM }]);
      expect(result.response).toEqual(RESPONSE);
      expect(result.handled).toHaveLength(1);
      expect(result.handled[0]!.request).toBe(REQUEST);
      const context = result.handled[0]!.context;
      expect(context.principal).toBe(PRINCIPAL);
      expect(context.access).toBe(TABLE.get(path));
      expect(context.em).toBe(EM);
      expect((context.metadata as ReturnType<typeof Metadata>).get("authorization")).toBe(`Bearer ${TOKEN}`);
    }
  });

  it("passes a streamed response through", async () => {
    const { authenticate } = stubAuthenticator();
    const result = await call(authenticate, AUTHENTICATED, bearer(TOKEN), [{ n: 1 }, { n: 2 }]);
    expect(result.yielded).toEqual([{ n: 1 }, { n: 2 }]);
  });

  it("refuses with the authenticator's reason, on public methods too (a bad token is never an anonymous call)", async () => {
    for (const path of [PUBLIC, SIGNUP, AUTHENTICATED, PERMISSION]) {
      const expired = unauthenticated("TOKEN_EXPIRED", "token has expired");
      const { authenticate, calls } = stubAuthenticator(async () => {
        throw expired;
      });
      const outcome = await call(authenticate, path, bearer(TOKEN)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(outcome, path).toBe(expired);
      expect(calls).toHaveLength(1);
    }
  });

  it("does not treat an authenticator's empty answer as a principal on a method that needs one", async () => {
    const { authenticate } = stubAuthenticator(async () => undefined as unknown as Principal);
    expect(await grpcRefusal(call(authenticate, AUTHENTICATED, bearer(TOKEN)))).toEqual(TOKEN_MISSING);
    expect((await call(authenticate, PUBLIC, bearer(TOKEN))).handled[0]?.context.principal).toBeUndefined();
  });
});

describe("readBearer", () => {
  it("reads no token when there is no header", () => {
    expect(readBearer(undefined)).toBeUndefined();
  });

  it("reads the token of `Bearer <token>`, with any token68 character, padding, and surrounding whitespace", () => {
    expect(readBearer(`Bearer ${TOKEN}`)).toBe(TOKEN);
    const every = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/-";
    expect(readBearer(`Bearer ${every}`)).toBe(every);
    for (const c of every) expect(readBearer(`Bearer ${c}`), c).toBe(c);
    expect(readBearer("Bearer abc=")).toBe("abc=");
    expect(readBearer("Bearer abc==")).toBe("abc==");
    expect(readBearer(`  Bearer ${TOKEN}  `)).toBe(TOKEN);
    expect(readBearer(` Bearer ${TOKEN}`)).toBe(TOKEN);
    expect(readBearer(`Bearer ${TOKEN}\t`)).toBe(TOKEN);
  });

  it("reads a token of exactly MAX_JWT_LENGTH characters and refuses one longer", () => {
    const longest = "a".repeat(MAX_JWT_LENGTH);
    expect(readBearer(`Bearer ${longest}`)).toBe(longest);
    expect(() => readBearer(`Bearer ${longest}a`)).toThrow("malformed authorization header");
    expect(() => readBearer(`Bearer ${"a".repeat(MAX_JWT_LENGTH - 2)}==`)).not.toThrow();
    expect(() => readBearer(`Bearer ${"a".repeat(MAX_JWT_LENGTH - 1)}==`)).toThrow("malformed authorization header");
  });

  it.each([
    ["an empty header", ""],
    ["blanks", "   "],
    ["the scheme alone", "Bearer"],
    ["the scheme and a space", "Bearer "],
    ["a lower-case scheme", `bearer ${TOKEN}`],
    ["an upper-case scheme", `BEARER ${TOKEN}`],
    ["another scheme", `Basic ${TOKEN}`],
    ["no scheme", TOKEN],
    ["no space", `Bearer${TOKEN}`],
    ["two spaces", `Bearer  ${TOKEN}`],
    ["a tab", `Bearer\t${TOKEN}`],
    ["text before the scheme", `xBearer ${TOKEN}`],
    ["a scheme inside", `Token Bearer ${TOKEN}`],
    ["a second word", `Bearer ${TOKEN} extra`],
    ["two tokens", `Bearer ${TOKEN} Bearer ${TOKEN}`],
    ["a character outside token68", `Bearer ${TOKEN}!`],
    ["a comma", `Bearer ${TOKEN},`],
    ["a newline inside", `Bearer ${TOKEN}\nx`],
    ["padding inside", "Bearer ab=c"],
    ["padding alone", "Bearer =="],
    ["padding first", "Bearer =abc"],
  ])("refuses a header with %s (UNAUTHENTICATED/TOKEN_INVALID), on a public method too", async (_, header) => {
    expect(() => readBearer(header)).toThrow("malformed authorization header");
    // Metadata cannot carry a tab or a newline (nor can HTTP/2): those are for readBearer alone.
    if (/[\t\n]/.test(header)) return;
    const { authenticate, calls } = stubAuthenticator();
    expect(await grpcRefusal(call(authenticate, PUBLIC, { authorization: header }))).toEqual(MALFORMED);
    expect(await grpcRefusal(call(authenticate, PERMISSION, { authorization: header }))).toEqual(MALFORMED);
    expect(calls).toEqual([]);
  });
});
