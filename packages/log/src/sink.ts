// Where log bytes end up: a file (with reopen and optional size/time rotation) or a file
// descriptor (stdout). Runs in the log thread only, so its synchronous writes never touch the
// SIP hot path; being synchronous, a write is on disk (in the page cache) before the next one
// starts, which is what makes reopen/rotation lose no line.
import { closeSync, existsSync, fstatSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs'

export interface RotateOptions {
  /** Rotate when the file reaches this many bytes; 0/false/null: never by size. */
  size?: number | false | null
  /** Rotate when the file is this old (ms); 0/false/null: never by time. */
  interval?: number | false | null
  /** Rotated files kept: path.1 (newest) .. path.keep. Default 7. */
  keep?: number
}

export interface Sink {
  write(text: string): void
  reopen(): void
  rotate(): void
  close(): void
}

const sleeper = new Int32Array(new SharedArrayBuffer(4))

function writeAll(fd: number, buf: Buffer): void {
  let off = 0
  let spins = 0
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off, buf.length - off)
    } catch (err) {
      // a non-blocking stdout pipe that is full: wait a little, bounded
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN' && spins++ < 10_000) {
        Atomics.wait(sleeper, 0, 0, 1)
        continue
      }
      throw err
    }
  }
}

export class FdSink implements Sink {
  constructor(private readonly fd: number) {}
  write(text: string): void { writeAll(this.fd, Buffer.from(text, 'utf8')) }
  reopen(): void {}
  rotate(): void {}
  close(): void {}
}

export class FileSink implements Sink {
  private fd: number
  private size: number
  private openedAt: number
  /** Text after the last newline of the last write: held so a file never ends mid-line. */
  private tail = ''
  private readonly maxSize: number
  private readonly interval: number
  private readonly keep: number

  constructor(readonly path: string, rotate: RotateOptions = {}, private readonly now: () => number = Date.now) {
    this.maxSize = typeof rotate.size === 'number' && rotate.size > 0 ? rotate.size : 0
    this.interval = typeof rotate.interval === 'number' && rotate.interval > 0 ? rotate.interval : 0
    this.keep = Math.max(1, rotate.keep ?? 7)
    this.fd = openSync(path, 'a', 0o640)
    this.size = fstatSync(this.fd).size
    this.openedAt = this.now()
  }

  write(text: string): void {
    const s = this.tail.length > 0 ? this.tail + text : text
    const nl = s.lastIndexOf('\n')
    if (nl < 0) {
      this.tail = s
      return
    }
    this.tail = nl === s.length - 1 ? '' : s.slice(nl + 1)
    const buf = Buffer.from(nl === s.length - 1 ? s : s.slice(0, nl + 1), 'utf8')
    let off = 0
    while (off < buf.length) {
      if (this.due()) this.rotate()
      let end = buf.length
      if (this.maxSize > 0 && this.size + (end - off) > this.maxSize) {
        // cut at the last whole line that fits; a single line longer than the limit goes whole
        const room = this.maxSize - this.size
        const cut = room > 0 ? buf.lastIndexOf(0x0a, off + room - 1) : -1
        if (cut >= off) end = cut + 1
        else if (this.size > 0) {
          this.rotate()
          continue
        } else end = buf.indexOf(0x0a, off) + 1
      }
      writeAll(this.fd, buf.subarray(off, end))
      this.size += end - off
      off = end
    }
  }

  /** Rotation is due (checked before a write, so one file holds whole writes). */
  due(): boolean {
    if (this.size === 0) return false
    if (this.maxSize > 0 && this.size >= this.maxSize) return true
    return this.interval > 0 && this.now() - this.openedAt >= this.interval
  }

  /** After an external rename (logrotate): close the old file, open `path` anew. */
  reopen(): void {
    closeSync(this.fd)
    this.fd = openSync(this.path, 'a', 0o640)
    this.size = fstatSync(this.fd).size
    this.openedAt = this.now()
  }

  /** path.(keep-1) -> path.keep, ..., path -> path.1, then a fresh path. */
  rotate(): void {
    closeSync(this.fd)
    const oldest = `${this.path}.${this.keep}`
    if (existsSync(oldest)) unlinkSync(oldest)
    for (let i = this.keep - 1; i >= 1; i--) {
      const from = `${this.path}.${i}`
      if (existsSync(from)) renameSync(from, `${this.path}.${i + 1}`)
    }
    if (existsSync(this.path)) renameSync(this.path, `${this.path}.1`)
    this.fd = openSync(this.path, 'a', 0o640)
    this.size = 0
    this.openedAt = this.now()
  }

  close(): void {
    if (this.tail.length > 0) {
      // a last line without newline: keep it rather than lose it
      writeAll(this.fd, Buffer.from(this.tail + '\n', 'utf8'))
      this.tail = ''
    }
    closeSync(this.fd)
  }
}
