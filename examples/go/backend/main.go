// A Go backend using Metering, with stubs generated from proto/ (see ../buf.gen.yaml).
// It records a charge, replays it, reserves and records against the reservation,
// reads the day's usage, decodes the BadRequest of a bad request, reads the
// charge stream, and reads a prepaid credit balance; it checks every answer and exits non-zero on a mismatch. Run by examples/run-go.sh (and CI):
//
//	backend -address 127.0.0.1:50051 -operator-key KEY
package main

import (
	"context"
	"flag"
	"fmt"
	"math/big"
	"os"
	"sort"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "metering.local/gen/metering/v1"
)

func check(ok bool, what string) {
	if !ok {
		fmt.Println("FAILED:", what)
		os.Exit(1)
	}
	fmt.Println("ok:", what)
}

func main() {
	address := flag.String("address", "127.0.0.1:50051", "server host:port")
	operatorKey := flag.String("operator-key", "", "the server's operator key")
	flag.Parse()
	conn, err := grpc.Dial(*address, grpc.WithInsecure()) // Debian's grpc-go 1.33 predates credentials/insecure
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := pb.NewMeteringServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	account := fmt.Sprintf("go-%d", time.Now().UnixNano())

	op := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*operatorKey)
	created, err := client.CreateApiKey(op, &pb.CreateApiKeyRequest{AccountId: account, Name: "go backend", Scopes: []pb.ApiKeyScope{pb.ApiKeyScope_API_KEY_SCOPE_RECORD, pb.ApiKeyScope_API_KEY_SCOPE_READ}})
	check(err == nil, "CreateApiKey with the operator key")
	withKey := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+created.Secret)

	reserved, err := client.CheckLimits(withKey, &pb.CheckLimitsRequest{UserId: "bob", Reserve: true, IdempotencyKey: "hold-1", AdditionalTokens: 500})
	check(err == nil && reserved.Allowed && reserved.Reservation.GetHeldTokens() == 500, "CheckLimits reserves 500 tokens")

	request := &pb.RecordChargeRequest{UserId: "bob", IdempotencyKey: "call-1", Provider: "openai", Model: "gpt-4o", PromptTokens: 100, CompletionTokens: 200, ReservationId: reserved.Reservation.GetReservationId()}
	recorded, err := client.RecordCharge(withKey, request)
	check(err == nil && recorded.Charge.GetTotalCost().GetAmount() == "0.00225", "RecordCharge prices gpt-4o 100+200 tokens at 0.00225 USD")
	check(recorded.Charge.GetAccountId() == account, "the account comes from the API key")
	again, err := client.RecordCharge(withKey, request)
	check(err == nil && again.Replayed && again.Charge.GetChargeId() == recorded.Charge.GetChargeId(), "the same idempotency key replays the charge")

	today := time.Now().UTC().Format("2006-01-02")
	usage, err := client.GetDailyUsage(withKey, &pb.GetDailyUsageRequest{StartDate: today, EndDate: today})
	check(err == nil && usage.Totals.GetMessageCount() == 1 && usage.Totals.GetTotalCost().GetAmount() == "0.00225", "GetDailyUsage sums the day")

	_, err = client.RecordCharge(withKey, &pb.RecordChargeRequest{UserId: "bob", Provider: "OpenAI", Model: "gpt-4o", PromptTokens: -1})
	st, _ := status.FromError(err)
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	sort.Strings(fields)
	check(st.Code() == codes.InvalidArgument && fmt.Sprint(fields) == "[idempotency_key prompt_tokens provider]", fmt.Sprintf("INVALID_ARGUMENT names the bad fields %v", fields))

	// The charge stream: from the start, then from now (where it starts is in the response headers).
	streamCtx, stop := context.WithCancel(withKey)
	fromStart := int64(0) // after_sequence is optional: unset means from now
	history, err := client.WatchCharges(streamCtx, &pb.WatchChargesRequest{AfterSequence: &fromStart})
	check(err == nil, "WatchCharges opens")
	first, err := history.Recv()
	check(err == nil && first.Event.GetSequence() == 1 && first.Event.GetCharge().GetChargeId() == recorded.Charge.GetChargeId(), "WatchCharges streams the recorded charge with its sequence")
	live, err := client.WatchCharges(streamCtx, &pb.WatchChargesRequest{})
	check(err == nil, "WatchCharges from now opens")
	header, err := live.Header()
	start := header.Get("x-start-after-sequence")
	check(err == nil && fmt.Sprint(start) == "[1]", fmt.Sprintf("a stream from now says where it starts (x-start-after-sequence %v)", start))
	later, err := client.RecordCharge(withKey, &pb.RecordChargeRequest{UserId: "bob", IdempotencyKey: "call-2", Provider: "openai", Model: "gpt-4o-mini", PromptTokens: 10, CompletionTokens: 5})
	check(err == nil, "RecordCharge again")
	next, err := live.Recv()
	check(err == nil && next.Event.GetSequence() == 2 && next.Event.GetCharge().GetChargeId() == later.Charge.GetChargeId(), "and streams what commits after that")
	stop()

	// Prepaid credits: the operator grants 1.00 USD (CreateGrant needs the ADMIN scope), a call
	// burns its cost, and the backend reads the balance with its own key.
	grant, err := client.CreateGrant(op, &pb.CreateGrantRequest{AccountId: account, IdempotencyKey: "topup-1", Amount: &pb.Money{Amount: "1.00", CurrencyCode: "USD"}, Kind: pb.GrantKind_GRANT_KIND_PAID, Reason: "top-up", Actor: "go example"})
	check(err == nil && grant.Grant.GetRemaining().GetAmount() == "1", "CreateGrant grants 1.00 USD")
	burned, err := client.RecordCharge(withKey, &pb.RecordChargeRequest{UserId: "bob", IdempotencyKey: "call-3", Provider: "openai", Model: "gpt-4o", PromptTokens: 100, CompletionTokens: 200})
	check(err == nil, "RecordCharge against the credits")
	balance, err := client.GetBalance(withKey, &pb.GetBalanceRequest{})
	check(err == nil && balance.Balance.GetHasCredits(), "GetBalance reads the balance")
	left, _ := new(big.Rat).SetString("1.00")
	cost, _ := new(big.Rat).SetString(burned.Charge.GetTotalCost().GetAmount())
	available, ok := new(big.Rat).SetString(balance.Balance.GetAvailable().GetAmount())
	check(ok && available.Cmp(left.Sub(left, cost)) == 0, fmt.Sprintf("the call burned exactly its cost: %s USD available", balance.Balance.GetAvailable().GetAmount()))

	fmt.Println("go backend: all checks passed (account " + account + ")")
}
