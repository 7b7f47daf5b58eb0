import type { Transaction } from './transaction.js'

/**
 * Transactions by Via branch. Nearly every branch has one transaction; the few that share one (an
 * INVITE and its CANCEL, §9.1/§9.2) are chained through `tx._chain`, so no key string is built
 * per message and the matching rules (§17.1.3, §17.2.3) are applied by walking the chain.
 */
export class BranchIndex {
  private readonly map: Map<string, Transaction>

  constructor() {
    this.map = new Map()
  }

  /** The newest transaction with this branch; older ones follow through `_chain`. */
  get(branch: string): Transaction | undefined {
    return this.map.get(branch)
  }

  add(tx: Transaction): void {
    tx._chain = this.map.get(tx.branch) ?? null
    this.map.set(tx.branch, tx)
  }

  remove(tx: Transaction): void {
    const head = this.map.get(tx.branch)
    if (head === undefined) return
    if (head === tx) {
      if (tx._chain === null) this.map.delete(tx.branch)
      else this.map.set(tx.branch, tx._chain)
      tx._chain = null
      return
    }
    let prev = head
    while (prev._chain !== null && prev._chain !== tx) prev = prev._chain
    if (prev._chain === tx) {
      prev._chain = tx._chain
      tx._chain = null
    }
  }
}
