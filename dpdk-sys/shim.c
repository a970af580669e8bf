/* DPDK's hot functions are static inline and some are macros: Rust cannot call them through
 * bindings, so each gets a one-line real function here. */
#include "wrapper.h"

uint16_t mbox_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}
uint16_t mbox_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}
struct rte_mbuf *mbox_rte_pktmbuf_alloc(struct rte_mempool *pool) { return rte_pktmbuf_alloc(pool); }
void mbox_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void *mbox_rte_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t mbox_rte_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t mbox_rte_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
char *mbox_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
uint32_t mbox_rte_mbuf_rss_hash(const struct rte_mbuf *m) { return m->hash.rss; }
int mbox_rte_errno(void) { return rte_errno; }
