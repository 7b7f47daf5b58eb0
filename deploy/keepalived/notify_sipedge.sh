#!/bin/sh
# keepalived notify: $1=GROUP|INSTANCE $2=name $3=MASTER|BACKUP|FAULT. Logs the transition;
# sipedge itself needs no action (it binds the VIP with ip_nonlocal_bind and shares state via Redis).
logger -t sipedge-vip "VRRP $2 -> $3"
exit 0
