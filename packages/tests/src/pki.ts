// A throw-away test CA and server certificates signed by it (openssl), for clients that verify
// the edge's certificate against a CA they are told to trust (baresip's sip_cafile, a browser).
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface TestCa { cert: string; key: string }

/** A self-signed CA (P-256, one day) written to dir/name-ca.{crt,key}. */
export function makeCa(dir: string, name = 'test'): TestCa {
  const cert = join(dir, `${name}-ca.crt`)
  const key = join(dir, `${name}-ca.key`)
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=sipedge ${name} CA`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  return { cert, key }
}

/**
 * A server certificate for `names` (DNS names and IP addresses, all as subjectAltName) signed by
 * `ca`, written to dir/name.{crt,key}.
 */
export function makeServerCert(dir: string, name: string, ca: TestCa, names: string[]): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  const csr = join(dir, `${name}.csr`)
  const ext = join(dir, `${name}.ext`)
  const san = names.map(n => (/^[\d.]+$/.test(n) || n.includes(':') ? `IP:${n}` : `DNS:${n}`)).join(',')
  writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`)
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=${names[0]}`, '-keyout', key, '-out', csr], { stdio: 'ignore' })
  execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '1',
    '-extfile', ext, '-out', cert], { stdio: 'ignore' })
  return { cert, key }
}
