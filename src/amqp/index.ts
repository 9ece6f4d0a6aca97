// Microservice registration over AMQP: what the rest of the code may use.
export { MAX_MESSAGE_BYTES, REGISTER_MICROSERVICE_PATH, REGISTRATION_QUEUE, RegistrationConsumer } from "./registration-consumer.ts";
