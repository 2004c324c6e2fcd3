// sud's C interface from C++17: the header as C++ includes it, a callback
// that is a static member function (no lambda) reaching its object through
// the user pointer, and the thread handle owned by a RAII type.

#include "sud.h"
#include "check.h"

#include <cerrno>
#include <cstdint>
#include <memory>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

// The emulator's policy: an object, as a C++ program would keep it.
class Policy {
public:
    explicit Policy(uint64_t ppid) : ppid_(ppid) {}

    // What sud calls: a plain function, the object comes as `user`.
    static int on_syscall(sud_syscall *call, void *user)
    {
        return static_cast<Policy *>(user)->decide(call);
    }

    long calls() const { return calls_; }

private:
    int decide(sud_syscall *call)
    {
        ++calls_;
        switch (sud_syscall_number(call)) {
        case SYS_getppid:
            return sud_emulate(call, ppid_);
        case SYS_getpid:
            return SUD_ACTION_REISSUE;
        default:
            return sud_deny(call, EPERM);
        }
    }

    uint64_t ppid_;
    long calls_ = 0;
};

// A sud_thread for the calling thread, freed with its owner.
struct ThreadFree {
    void operator()(sud_thread *thread) const { sud_thread_free(thread); }
};
using Thread = std::unique_ptr<sud_thread, ThreadFree>;

Thread new_thread()
{
    sud_thread *thread = nullptr;
    return Thread(sud_thread_new(&thread) == 0 ? thread : nullptr);
}

long guest(long number) { return sud_guest_syscall(number, 0, 0, 0, 0, 0, 0); }

Policy policy(777);

void member_callback_with_user_pointer()
{
    Thread thread = new_thread();
    CHECK(thread != nullptr);
    if (!thread)
        return;
    volatile uint8_t *selector = sud_thread_selector(thread.get());
    CHECK_EQ(sud_thread_arm(thread.get()), 0);
    sud_block(selector);
    long ppid = guest(SYS_getppid);
    long pid = guest(SYS_getpid);
    long denied = guest(SYS_getuid);
    sud_allow(selector);
    CHECK_EQ(ppid, 777);
    CHECK_EQ(pid, getpid());
    CHECK_EQ(denied, -EPERM);
    CHECK_EQ(policy.calls(), 3);
}

} // namespace

int main()
{
    CHECK_EQ(sud_install(&Policy::on_syscall, &policy), 0);
    RUN(member_callback_with_user_pointer);
    return failures != 0;
}
