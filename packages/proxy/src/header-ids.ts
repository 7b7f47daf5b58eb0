// Header ids of @sipedge/sip (HeaderField.id), looked up once through its public door.
import { lookupHeaderName } from '@sipedge/sip'

export const H_VIA_ID = lookupHeaderName('via')
export const H_ROUTE_ID = lookupHeaderName('route')
export const H_CONTENT_LENGTH_ID = lookupHeaderName('content-length')
export const H_PROXY_REQUIRE_ID = lookupHeaderName('proxy-require')
