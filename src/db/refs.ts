// The key of a many-to-one reference, whether MikroORM gives a loaded entity,
// a reference object or the bare key.

/** The `key` (default `id`) of a reference, as a string. */
export function refKey(ref: unknown, key = "id"): string {
  return ref !== null && typeof ref === "object" ? String((ref as Record<string, unknown>)[key]) : String(ref);
}
