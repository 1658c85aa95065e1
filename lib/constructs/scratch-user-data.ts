/**
 * Seconds between a stopped job's SIGTERM and its SIGKILL on the GPU nodes: within Spot's
 * 120-second notice, less the agent's reaction to it. The trainer's launcher gives its workers
 * TORCHRUN_SHUTDOWN_TIMEOUT_SECONDS of it, so that it can still exit 143 itself.
 */
export const ECS_STOP_TIMEOUT_SECONDS = 110;
/** torchrun's wait for its workers after a SIGTERM (TORCH_ELASTIC_SHUTDOWN_TIMEOUT); under ECS_STOP_TIMEOUT_SECONDS. */
export const TORCHRUN_SHUTDOWN_TIMEOUT_SECONDS = 100;

/**
 * Assembles the instance-store NVMe disks into one RAID-0 volume mounted at /scratch (MIME, as
 * Batch requires). The ECS-optimized AL2023 image has no mdadm, so it is installed from the
 * Amazon Linux repositories (S3, reached through the gateway endpoint). Whatever fails, /scratch
 * ends writable for the trainer's user, and /scratch/.dapt-scratch says what it is (RAID-0 over
 * N disks, one disk, or the root volume) for the trainer to log; a degraded layout is also
 * written to the console log (`aws ec2 get-console-output`).
 *
 * It also sets the ECS agent's stop window before the agent starts: ECS_CONTAINER_STOP_TIMEOUT
 * (default 30 s) is how long `docker stop` waits between the SIGTERM of a terminated job (or a
 * drained Spot node) and the SIGKILL, i.e. the time the trainer's emergency checkpoint has. It is
 * set within Spot's two-minute interruption notice, and Spot draining makes the agent stop the
 * job as soon as the notice comes (docs/operations.md, "Stopping a training job").
 */
export const SCRATCH_USER_DATA = [
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="==DAPT=="',
  '',
  '--==DAPT==',
  'Content-Type: text/x-shellscript; charset="us-ascii"',
  '',
  '#!/bin/bash',
  'set -ux',
  `echo "ECS_CONTAINER_STOP_TIMEOUT=${ECS_STOP_TIMEOUT_SECONDS}s" >> /etc/ecs/ecs.config`,
  'echo "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" >> /etc/ecs/ecs.config',
  'mkdir -p /scratch',
  'layout="root volume"',
  'trap \'chmod 1777 /scratch; echo "$layout" > /scratch/.dapt-scratch; chmod 0644 /scratch/.dapt-scratch\' EXIT',
  'disks=$(lsblk -d -n -o NAME,MODEL | awk \'/Instance Storage/ {print "/dev/"$1}\')',
  'count=$(echo "$disks" | grep -c . || true)',
  'say() { echo "dapt-scratch: $*"; echo "dapt-scratch: $*" >/dev/console 2>/dev/null || true; }',
  'if [ "$count" -gt 1 ]; then',
  '  command -v mdadm >/dev/null || dnf install -y -q mdadm || say "mdadm could not be installed"',
  '  if command -v mdadm >/dev/null && mdadm --create /dev/md0 --level=0 --raid-devices="$count" $disks --run && mkfs.xfs -f /dev/md0 && mount /dev/md0 /scratch; then',
  '    layout="raid0 over $count NVMe disks"',
  '  else',
  '    say "RAID-0 over $count disks failed; falling back to one disk"',
  '    mdadm --stop /dev/md0 2>/dev/null || true',
  '    first=$(echo "$disks" | head -n1)',
  '    if mkfs.xfs -f "$first" && mount "$first" /scratch; then layout="DEGRADED: one of $count NVMe disks ($first)"; else say "no NVMe disk mounted; /scratch is on the root volume"; layout="DEGRADED: root volume"; fi',
  '  fi',
  'elif [ "$count" -eq 1 ]; then',
  '  if mkfs.xfs -f "$disks" && mount "$disks" /scratch; then layout="one NVMe disk"; else say "NVMe disk $disks not mounted; /scratch is on the root volume"; layout="DEGRADED: root volume"; fi',
  'fi',
  'say "/scratch: $layout"',
  '--==DAPT==--',
].join('\n');
