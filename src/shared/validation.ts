// Field validators shared by the domain services. Each adds a violation rather
// than throwing, so one request reports all of its problems at once.
import type { Violations } from "../errors.ts";

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const TENANT_NAME = /^[a-z][a-z0-9-]{1,62}$/;
// No '@': a login identifier with one is an e-mail address, without one a
// username, so no stranger can register an e-mail equal to a victim's username.
export const USERNAME = /^[A-Za-z0-9._-]{1,64}$/;
// Deliberately simple: one @, no spaces, a dot in the domain. Deliverability is the mailer's job.
export const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]+$/;
export const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:\d{1,5})?$/;

export function checkUuid(value: string, field: string, v: Violations): void {
  if (!UUID.test(value)) v.add(field, "must be a UUID");
}

export function checkPattern(value: string, pattern: RegExp, field: string, description: string, v: Violations): void {
  if (!pattern.test(value)) v.add(field, description);
}

export function checkMaxLength(value: string, max: number, field: string, v: Violations): void {
  if ([...value].length > max) v.add(field, `must be at most ${max} characters`);
}

/** Case-folds an identifier for uniqueness and lookups. */
export function foldKey(value: string): string {
  return value.normalize("NFKC").toLowerCase();
}

/**
 * AIP-134 update masks: the masked paths that `updatable` lists, as a set.
 * An empty mask, or a path that is not updatable, adds an update_mask violation.
 */
export function readUpdateMask<F extends string>(mask: readonly string[], updatable: readonly F[], v: Violations): Set<F> {
  const fields = new Set<F>();
  if (mask.length === 0) v.add("update_mask", `is required; updatable: ${updatable.join(", ")}`);
  for (const path of mask) {
    if ((updatable as readonly string[]).includes(path)) fields.add(path as F);
    else v.add("update_mask", `"${path}" is not updatable; updatable: ${updatable.join(", ")}`);
  }
  return fields;
}
