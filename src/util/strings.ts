/** The two ways a string is taken as it comes. */

/** A string from a parsed document (JSON, YAML, an API object): itself when non-empty, else undefined. */
export function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** A string setting taken verbatim (a flag's or an environment variable's value): no parsing. */
export function verbatim(raw: string): string {
  return raw;
}
