// Assertions live in platform/ (the bottom layer); core re-exports them for its own modules.
export { AssertionError, assert, unreachable } from '../platform/assert.js';
