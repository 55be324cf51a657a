/**
 * Encryption at rest: the AEADs a store may use, the keys derived from its master key, and
 * the sealed form of every record and metadata object. A sealed object is
 * nonce[12] | ciphertext | tag[16]; each seal draws a fresh random nonce, so writers on several
 * hosts never share a counter, and binds the object's identity as associated data, so a
 * record moved to another place or another object fails to open rather than reading as the
 * other's contents.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type CipherGCM, type DecipherGCM } from 'node:crypto';
import { SealBrokenError } from './errors.js';

export const CIPHERS = ['aes-256-gcm', 'chacha20-poly1305'] as const;
export type Cipher = (typeof CIPHERS)[number];
/**
 * What `init --encryption` without a cipher means. Measured here through Node (bench/limits.ts,
 * README "Encryption"), ChaCha20-Poly1305 seals 1 MiB records as fast as AES-256-GCM or a little
 * faster, although this CPU has AES-NI and VAES; and it stays fast and constant-time in software
 * on hosts without AES instructions (small ARM NAS boxes), where AES-GCM falls back to slow tables.
 */
export const DEFAULT_CIPHER: Cipher = 'chacha20-poly1305';
export const MASTER_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** What sealing adds to an object's size. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;
/**
 * update() returns a new buffer for its output. One of 128 KiB or more is above glibc's mmap
 * threshold: fresh pages from the kernel each time, faulted in and zeroed, at a third of the
 * AEAD's own speed here (bench/limits.ts measures it). Pieces below it reuse the heap's warm memory.
 */
const PIECE_BYTES = 64 * 1024;

/** Runs `input` through `cipher` piece by piece into `output` at `at`; returns where it ended. */
function transform(cipher: CipherGCM | DecipherGCM, input: Uint8Array, output: Buffer, at: number): number {
  for (let from = 0; from < input.byteLength; from += PIECE_BYTES) {
    at += cipher.update(input.subarray(from, Math.min(from + PIECE_BYTES, input.byteLength))).copy(output, at);
  }
  return at;
}

export function isCipher(value: unknown): value is Cipher {
  return typeof value === 'string' && (CIPHERS as readonly string[]).includes(value);
}

/** What a key is for: each purpose gets its own key, so no two uses ever share one. */
export type KeyPurpose = 'seal' | 'chunk-id';

/** HKDF-SHA256 of the master key, one key per purpose. */
export function deriveKey(master: Buffer, purpose: KeyPurpose): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `chunkvault ${purpose}`, 32));
}

export function newMasterKey(): Buffer {
  return randomBytes(MASTER_KEY_BYTES);
}

/** Seals and opens objects with one key and cipher; `ad` names the object (kind, id, place). */
export class Sealer {
  constructor(
    readonly cipher: Cipher,
    private readonly key: Buffer,
  ) {}

  static fromMaster(cipher: Cipher, master: Buffer): Sealer {
    return new Sealer(cipher, deriveKey(master, 'seal'));
  }

  seal(plain: Uint8Array, ad: Uint8Array): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    // Node's types name only GCM's options; ChaCha20-Poly1305 takes the same nonce, tag length and AAD.
    const cipher = createCipheriv(this.cipher as 'aes-256-gcm', this.key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(ad, { plaintextLength: plain.byteLength });
    const sealed = Buffer.allocUnsafe(plain.byteLength + SEAL_OVERHEAD);
    nonce.copy(sealed, 0);
    const end = transform(cipher, plain, sealed, NONCE_BYTES);
    cipher.final().copy(sealed, end);
    cipher.getAuthTag().copy(sealed, sealed.byteLength - TAG_BYTES);
    return sealed;
  }

  /** Throws SealBrokenError unless `sealed` is exactly what seal(plain, ad) gave under this key. */
  open(sealed: Uint8Array, ad: Uint8Array): Buffer {
    if (sealed.byteLength < SEAL_OVERHEAD) throw new SealBrokenError(`sealed object of ${sealed.byteLength} bytes is shorter than its nonce and tag`, { bytes: sealed.byteLength });
    const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const nonce = bytes.subarray(0, NONCE_BYTES);
    const tag = bytes.subarray(bytes.byteLength - TAG_BYTES);
    const decipher = createDecipheriv(this.cipher as 'aes-256-gcm', this.key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(ad, { plaintextLength: bytes.byteLength - SEAL_OVERHEAD });
    decipher.setAuthTag(tag);
    const plain = Buffer.allocUnsafe(bytes.byteLength - SEAL_OVERHEAD);
    transform(decipher, bytes.subarray(NONCE_BYTES, bytes.byteLength - TAG_BYTES), plain, 0);
    try {
      decipher.final();
      return plain;
    } catch (err) {
      throw new SealBrokenError('a sealed object does not open: it is damaged, was moved, or was sealed with another key', {}, err);
    }
  }
}

/** The keys a store's objects are sealed and its chunks named with, from its master key. */
export interface StoreKeys {
  cipher: Cipher;
  /** Seals records and metadata objects. */
  sealer: Sealer;
  /** Keys BLAKE3 for chunk ids, so an id says nothing about known plaintext. */
  chunkIdKey: Buffer;
  /** The master key itself: worker threads derive the same keys from it. */
  master: Buffer;
}

export function storeKeys(cipher: Cipher, master: Buffer): StoreKeys {
  return { cipher, sealer: Sealer.fromMaster(cipher, master), chunkIdKey: deriveKey(master, 'chunk-id'), master };
}
