/** The version of Airlock's CLI and runtime. */
export const VERSION = '0.1.0';
