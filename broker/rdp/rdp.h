/*
 * The RDP gateway: any RDP client (mstsc, xfreerdp, Remmina) logs in with
 * qdesk credentials and lands on the console of its desktop. Frames come
 * from QEMU's VNC server through a socketpair that qmpd hands over; input
 * goes back the same way. This is all the broker needs to know.
 */
#ifndef QDESK_RDP_H
#define QDESK_RDP_H

struct event_base;

/*
 * Listen for RDP on addr:port (addr NULL or "" for every address) with the
 * PEM certificate and key at cert and key (read here, so call this before
 * dropping privileges), and reach qmpd at qmpd_socket. Returns -1 with a
 * cause when nothing was started.
 */
int	 rdp_gateway_start(struct event_base *, const char *addr, int port,
	    const char *cert, const char *key, const char *qmpd_socket,
	    char **cause);
/* The same on a listening socket the caller opened (owned from here). */
int	 rdp_gateway_start_fd(struct event_base *, int fd, const char *cert,
	    const char *key, const char *qmpd_socket, char **cause);
/*
 * What the gateway has done, for the broker's /metrics: connections
 * accepted, logins, bytes both ways (the kernel's TCP counters, closed
 * connections' included); per_vm hears each desktop with a session.
 */
struct rdp_gateway_stats {
	unsigned long long	connections;
	unsigned long long	logins;
	unsigned long long	bytes_in;
	unsigned long long	bytes_out;
	int			open;
};
void	 rdp_gateway_stats(struct rdp_gateway_stats *,
	    void (*per_vm)(const char *vm, void *), void *arg);
/*
 * Share a login throttle per client address (the portal's): try charges
 * an attempt from addr as it arrives and returns 0, or the seconds addr
 * must wait; done gives the charge back unless the attempt failed. Both
 * run on the loop. Without them RDP logins are not throttled here.
 */
void	 rdp_gateway_throttle(int (*try)(const char *addr),
	    void (*done)(const char *addr, int failed));
/* Stop listening and end every RDP session (each is told why). */
void	 rdp_gateway_stop(void);

/*
 * The .rdp file for the portal's Connect (RDP) button: the gateway's
 * address, the user's login, the desktop to land on. self_signed lowers
 * "authentication level" so clients warn instead of refusing. Returns
 * NULL with a cause when a field cannot go into the file.
 */
char	*rdp_file_build(const char *host, int port, const char *user,
	    const char *desktop, int self_signed, char **cause);

#endif
