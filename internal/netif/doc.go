// Package netif owns hagate's interaction with the kernel's links and
// addresses: adding and removing virtual IPs, watching links go up and down,
// announcing a virtual IP to the segment after a takeover (gratuitous ARP for
// IPv4, unsolicited neighbour advertisements for IPv6), and the FGCP-style
// virtual MAC.
//
// Everything goes through a [Handle], which is bound to one network namespace
// when it is made ([New] for the caller's, [NewAt] for another), so that a
// goroutine landing on another OS thread cannot act in the wrong namespace
// and tests can drive namespaces of their own without switching the test's
// thread.
//
// Two choices worth knowing:
//
//   - IPv6 virtual IPs are added with IFA_F_NODAD. A new primary must answer
//     for the address at once; with duplicate address detection it would stay
//     tentative for a second or more (unusable as a source, not answered for)
//     and, worse, could be marked dadfailed if the old primary still holds it
//     during the switch-over, leaving the cluster without the address.
//     Uniqueness is the cluster's job: only the primary holds a virtual IP.
//   - The gratuitous ARP is sent both as a request and as a reply. Hosts and
//     switches disagree about which one updates their tables: some only learn
//     from requests (RFC 5227 announcements), some only from replies
//     (RFC 2002 section 4.6), and Linux accepts either. Sending both costs one
//     frame and reaches all of them.
package netif
