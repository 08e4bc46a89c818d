/** Reading values of untrusted JSON (objects from the API, files from a store) without ever throwing. */

/** `v` as a plain object, or undefined for anything else (null, arrays, scalars). */
export const record = (v: unknown): Record<string, unknown> | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/** An own data property of a record: nothing inherited, and no getter is ever run. */
export const own = (o: Record<string, unknown> | undefined, k: string): unknown => (o ? Object.getOwnPropertyDescriptor(o, k)?.value : undefined);
