/**
 * The Redis Cluster hash slot of a key or shard channel: CRC16 (XMODEM) of the key, or
 * of its hash tag (the text between the first `{` and the next `}` when not empty),
 * modulo 16384, as `CLUSTER KEYSLOT` computes it.
 *
 * @internal
 */

const table = (() => {
  const t = new Uint16Array(256)
  for (let i = 0; i < 256; i++) {
    let crc = i << 8
    for (let j = 0; j < 8; j++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
    t[i] = crc
  }
  return t
})()

const crc16 = (bytes: Uint8Array): number => {
  let crc = 0
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ table[((crc >> 8) ^ byte) & 0xff]!
  return crc
}

/** The number of hash slots of a Redis Cluster. */
export const slots = 16384

/** The hash slot of `key` (UTF-8 bytes, hash tag honoured). */
export const slotOf = (key: string): number => {
  let bytes: Uint8Array = Buffer.from(key, "utf8")
  const open = bytes.indexOf(0x7b) // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1) // }
    if (close > open + 1) bytes = bytes.subarray(open + 1, close)
  }
  return crc16(bytes) % slots
}
