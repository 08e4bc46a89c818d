/**
 * A value now, or a promise of it: what the download path's caches answer. On a hit the answer is
 * there at once and the request goes on in the same turn, with no promise, microtask or async frame
 * per step; only a miss (a review or a read to make) waits. graphql-js executes resolvers the same
 * way (its PromiseOrValue) for the same reason: most answers are already known, and awaiting each
 * one costs more than the work.
 */
export type PromiseOr<T> = T | Promise<T>;

/** `f` of the value: at once when it is there, else once the promise settles (a rejection passes through). */
export function then<T, U>(value: PromiseOr<T>, f: (v: T) => PromiseOr<U>): PromiseOr<U> {
  return value instanceof Promise ? value.then(f) : f(value);
}
