/* What mbox uses of DPDK: EAL, ethdev, mbufs and mempools. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_version.h>

/* The shim (shim.c): DPDK's static inline functions and macros, as real functions. */
uint16_t mbox_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t mbox_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *mbox_rte_pktmbuf_alloc(struct rte_mempool *pool);
void mbox_rte_pktmbuf_free(struct rte_mbuf *m);
void *mbox_rte_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t mbox_rte_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t mbox_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
char *mbox_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint32_t mbox_rte_mbuf_rss_hash(const struct rte_mbuf *m);
int mbox_rte_errno(void);
