/**
 * The in-memory test store passes the same conformance suite as the real adapters, so the handler
 * tests that use it run against a store that keeps the ObjectStore contract.
 */
import { runStoreConformance } from './conformance.ts';
import { MemoryStore, memoryFaults } from '../support/memory-store.ts';

runStoreConformance('in-memory test store', async () => {
  const store = new MemoryStore();
  return {
    store,
    put: async (key, bytes) => store.put(key, bytes),
    cleanup: async () => store.objects.clear(),
    // Throttle, truncation and reset are its switches; it has no retries and no idle timeout to show.
    faulty: { store, faults: memoryFaults(store) },
  };
});
