/** A small listener list: stores never emit 'error', so a plain EventEmitter is not needed. */
export class Listeners<T> {
  private list: Array<(v: T) => void> = []
  add(fn: (v: T) => void): () => void {
    this.list.push(fn)
    return () => {
      const i = this.list.indexOf(fn)
      if (i >= 0) this.list.splice(i, 1)
    }
  }
  get size(): number {
    return this.list.length
  }
  emit(v: T): void {
    for (const fn of this.list.slice()) {
      try {
        fn(v)
      } catch {
        // a listener's bug must not break a sweep
      }
    }
  }
}
