/**
 * The spellings of a granted secret value that the redactor looks for: the bytes a
 * program prints when it shows the value raw, base64-, hex- or URL-encoded.
 *
 * Base64 is the subtle one: a value inside a longer encoded blob (`base64 < file`, a
 * JWT claim, a Basic auth header after `user:`) starts at byte offset 0, 1 or 2 mod 3
 * of that blob, and each offset gives different characters. For each offset we keep
 * only the characters whose 6 bits all come from the value's own bytes: those are the
 * same whatever surrounds the value, so they are found in any blob that contains it.
 */

/** Forms shorter than this are not matched: they occur by chance too often. */
export const MIN_SECRET_BYTES = 8;

/** A longer value is refused: its forms would make the matcher large and hold back a lot. */
export const MAX_SECRET_BYTES = 64 * 1024;

const HEX_LOWER = '0123456789abcdef';
const HEX_UPPER = '0123456789ABCDEF';

/** Bytes encodeURIComponent leaves alone: A-Z a-z 0-9 - _ . ! ~ * ' ( ) */
const URI_UNRESERVED = (() => {
  const t = new Uint8Array(256);
  for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*\'()') t[ch.charCodeAt(0)] = 1;
  return t;
})();

/**
 * Every distinct form of `value` at least MIN_SECRET_BYTES long, as latin1 strings (one
 * char per byte). The raw value comes first; the order is otherwise not significant.
 */
export function secretForms(value: string): string[] {
  const raw = Buffer.from(value, 'utf8');
  const forms = [raw.toString('latin1')];
  for (const offset of [0, 1, 2]) {
    const b64 = base64Core(raw, offset);
    forms.push(b64, b64.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  // The value encoded on its own (`printf %s "$S" | base64`): its last characters carry
  // a few of its bits and the padding; matched whole so nothing of it is left showing.
  const whole = raw.toString('base64');
  forms.push(whole, whole.replace(/=+$/, ''), raw.toString('base64url'));
  forms.push(hex(raw, HEX_LOWER), hex(raw, HEX_UPPER));
  forms.push(percent(raw, false), percent(raw, true));
  return [...new Set(forms)].filter((f) => f.length >= MIN_SECRET_BYTES);
}

/**
 * The base64 characters fully determined by `raw` when it sits at byte `offset` (mod 3)
 * of a longer encoded blob. Char j covers bits [6j, 6j+6) of the blob and the value
 * covers bits [8·offset, 8·(offset+n)): keep the chars inside that range.
 */
function base64Core(raw: Buffer, offset: number): string {
  const enc = Buffer.concat([Buffer.alloc(offset), raw]).toString('base64');
  return enc.slice(Math.ceil((8 * offset) / 6), Math.floor((8 * (offset + raw.length)) / 6));
}

function hex(raw: Buffer, digits: string): string {
  let s = '';
  for (const b of raw) s += digits[b >> 4] + digits[b & 15];
  return s;
}

/** encodeURIComponent over bytes (same output for valid UTF-8); `plus` writes spaces as `+`. */
function percent(raw: Buffer, plus: boolean): string {
  let s = '';
  for (const b of raw) {
    if (URI_UNRESERVED[b]) s += String.fromCharCode(b);
    else if (plus && b === 0x20) s += '+';
    else s += '%' + HEX_UPPER[b >> 4] + HEX_UPPER[b & 15];
  }
  return s;
}
