/** The error classes live below engine/ and store/ (store/errors.ts): one module, both layers. */
export * from '../store/errors.js';
